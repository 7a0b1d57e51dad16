"""The Triton extension routes tritonclient calls beside infer: model configuration and the
repository index, answered; the others refused with a 400 that names the extension.

A client calling an extension tailguard lacks gets that said in one line, never a 404 that
looks like a wrong URL or a parse error.
"""

from __future__ import annotations

from typing import Any

from tailguard.serve.loader import ModelSignature
from tailguard.tensors import TensorSpec

EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository(index)")

# Triton's model configuration spells datatypes as TYPE_<name>; BYTES is TYPE_STRING.
_CONFIG_TYPES = {"BYTES": "TYPE_STRING"}

# (route, extension name) of the Triton extensions tailguard does not implement.
_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("/v2/models/stats", "statistics"),
    ("/v2/models/{model}/stats", "statistics"),
    ("/v2/models/{model}/versions/{version}/stats", "statistics"),
    ("/v2/trace/setting", "trace"),
    ("/v2/models/{model}/trace/setting", "trace"),
    ("/v2/logging", "logging"),
    ("/v2/systemsharedmemory{rest:path}", "system shared-memory"),
    ("/v2/cudasharedmemory{rest:path}", "CUDA shared-memory"),
    ("/v2/repository/models/{model}/load", "model repository (load)"),
    ("/v2/repository/models/{model}/unload", "model repository (unload)"),
    ("/v2/models/{model}/generate", "generate"),
    ("/v2/models/{model}/generate_stream", "generate"),
)
UNSUPPORTED = _UNSUPPORTED


def unsupported(extension: str, path: str) -> str:
    """The one-line refusal for a request to an unsupported ``extension``'s ``path``."""
    return (f"the Triton {extension} extension is not supported by tailguard ({path}); "
            f"supported extensions: {', '.join(EXTENSIONS)}")


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    # Triton's dims leave out the batch dimension when max_batch_size > 0.
    return {"name": spec.name, "data_type": _CONFIG_TYPES.get(spec.datatype,
                                                              f"TYPE_{spec.datatype}"),
            "dims": list(spec.shape[1:]) or [1]}


def model_config(name: str, max_batch_size: int, signature: ModelSignature) -> dict[str, Any]:
    """``GET /v2/models/{m}/config``: the model's configuration in Triton's JSON form."""
    return {
        "name": name,
        "platform": signature.platform,
        "backend": "tailguard",
        "max_batch_size": max_batch_size,
        "input": [_config_tensor(s) for s in signature.inputs],
        "output": [_config_tensor(s) for s in signature.outputs],
        "dynamic_batching": {},
    }


def repository_index(models: list[tuple[str, str, bool]]) -> list[dict[str, str]]:
    """``POST /v2/repository/index``: every served (name, version, ready) model."""
    return [{"name": name, "version": version, "state": "READY" if ready else "UNAVAILABLE",
             "reason": "" if ready else "no ready replica"}
            for name, version, ready in models]
