"""Request bodies for the load generator, exactly as ``tailguard serve`` expects them.

Where bodies come from, first match wins:

1. explicit bodies (``--payloads FILE``: one JSON request body per line, sent round-robin);
2. ``--input`` options, which build one body: V2 ``NAME[:DATATYPE[:SHAPE]]=JSON`` (e.g.
   ``INPUT0=[[0.1,0.2,0.3,0.4]]`` or ``INPUT0:FP32:1x4=[1,2,3,4]``; a datatype left out is
   taken from the model's declaration); OpenAI ``TEXT`` or ``input=TEXT``;
3. the default of a known model (``echo``: ``INPUT0`` FP32 ``[1,4]``; ``minilm``: ``text``
   BYTES ``[1]``; OpenAI: ``{"model": M, "input": "a sentence"}``);
4. for any other V2 model, the metadata at ``GET /v2/models/{model}``: random data of each
   declared datatype, one row, every other variable dimension 4.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tailguard.load.client import Target, fetch
from tailguard.load.spec import LoadSpec
from tailguard.tensors import V2_TO_NUMPY


class PayloadError(ValueError):
    """A payload option or file cannot be used; the message says what to fix."""


VARIABLE_DIM = 4
GENERATED_BODIES = 16
_WORDS = ("tail", "latency", "model", "serve", "request", "batch", "quick", "brown", "fox",
          "vector", "sentence", "token", "replica", "deadline", "budget", "queue")

# The declarations of the built-in models, so no metadata call is needed for them.
KNOWN_V2_INPUTS: dict[str, list[dict[str, Any]]] = {
    "echo": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
              "data": [[0.1, 0.2, 0.3, 0.4]]}],
    "minilm": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a sentence"]}],
}
DEFAULT_TEXT = "a sentence"


def route(protocol: str, model: str) -> str:
    """The path a request body is POSTed to."""
    if protocol == "openai":
        return "/v1/embeddings"
    return f"/v2/models/{model}/infer"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def v2_body(inputs: Sequence[dict[str, Any]]) -> bytes:
    """``{"inputs": [...]}`` from tensor dicts with name, datatype, shape and data."""
    return _dumps({"inputs": [
        {"name": t["name"], "datatype": t["datatype"], "shape": list(t["shape"]),
         "data": t["data"]} for t in inputs
    ]})


def openai_body(model: str, texts: Sequence[str]) -> bytes:
    """``/v1/embeddings`` body: one text as a string, several as a list."""
    if not texts:
        raise PayloadError("an OpenAI embeddings request needs at least one input text")
    return _dumps({"model": model, "input": texts[0] if len(texts) == 1 else list(texts)})


def default_body(protocol: str, model: str) -> bytes | None:
    """The built-in body of a known model, or None when the model is unknown."""
    if protocol == "openai":
        return openai_body(model, [DEFAULT_TEXT])
    known = KNOWN_V2_INPUTS.get(model)
    return None if known is None else v2_body(known)


def read_payloads_file(path: Path) -> tuple[bytes, ...]:
    """Request bodies from a JSONL file: one JSON object per non-blank line."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise PayloadError(f"cannot read payloads file {path}: {exc}") from None
    bodies = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            parsed = json.loads(line)
        except ValueError as exc:
            raise PayloadError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise PayloadError(f"{path}:{number}: a request body must be a JSON object")
        bodies.append(line)
    if not bodies:
        raise PayloadError(f"{path}: no request bodies (one JSON object per line)")
    return tuple(bodies)


def _shape_of(data: Any) -> list[int]:
    shape: list[int] = []
    while isinstance(data, list):
        shape.append(len(data))
        data = data[0] if data else None
    return shape


def _infer_datatype(data: Any) -> str:
    flat = np.asarray(data, dtype=object).ravel().tolist() if isinstance(data, list) else [data]
    if all(isinstance(x, bool) for x in flat):
        return "BOOL"
    if all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
        return "INT64"
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat):
        return "FP32"
    return "BYTES"


def parse_v2_input(option: str, declared: dict[str, str] | None = None) -> dict[str, Any]:
    """One V2 tensor from ``NAME[:DATATYPE[:SHAPE]]=JSON`` (SHAPE like ``1x4``)."""
    head, sep, value = option.partition("=")
    if not sep or not head:
        raise PayloadError(f"--input {option!r}: use NAME[:DATATYPE[:SHAPE]]=JSON")
    name, _, rest = head.partition(":")
    datatype, _, shape_text = rest.partition(":")
    try:
        data = json.loads(value)
    except ValueError:
        data = value  # a bare word is a string: a BYTES element
    if not isinstance(data, list):
        data = [data]
    if shape_text:
        try:
            shape = [int(d) for d in shape_text.lower().split("x")]
        except ValueError:
            raise PayloadError(
                f"--input {option!r}: shape {shape_text!r} is not like 1x4"
            ) from None
        count = int(np.prod(shape))
        flat = np.asarray(data, dtype=object).ravel().tolist()
        if len(flat) != count:
            raise PayloadError(f"--input {option!r}: {len(flat)} values do not fill {shape}")
        data = flat
    else:
        shape = _shape_of(data)
    datatype = (datatype or (declared or {}).get(name) or _infer_datatype(data)).upper()
    if datatype not in V2_TO_NUMPY:
        raise PayloadError(f"--input {option!r}: unknown datatype {datatype!r}")
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def parse_openai_input(option: str) -> str:
    """The text of an OpenAI ``--input``: ``TEXT`` or ``input=TEXT``."""
    return option[len("input="):] if option.startswith("input=") else option


def declared_datatypes(metadata: dict[str, Any]) -> dict[str, str]:
    """``{input name: datatype}`` from V2 model metadata."""
    return {str(t["name"]): str(t["datatype"]) for t in metadata.get("inputs", [])}


def _random_tensor(spec: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    declared = [int(d) for d in spec.get("shape", [-1])] or [-1]
    # One row per request; every other variable dimension is VARIABLE_DIM.
    shape = [1 if declared[0] == -1 else declared[0]]
    shape += [VARIABLE_DIM if d == -1 else d for d in declared[1:]]
    count = int(np.prod(shape))
    datatype = str(spec["datatype"])
    data: list[Any]
    if datatype == "BYTES":
        data = [" ".join(rng.choice(_WORDS, size=6).tolist()) for _ in range(count)]
    elif datatype == "BOOL":
        data = (rng.random(count) < 0.5).tolist()
    elif datatype.startswith(("INT", "UINT")):
        data = rng.integers(0, 100, size=count).tolist()
    elif datatype.startswith("FP"):
        data = np.round(rng.standard_normal(count), 4).tolist()
    else:
        raise PayloadError(f"input {spec.get('name')!r}: unknown datatype {datatype!r}")
    return {"name": spec["name"], "datatype": datatype, "shape": shape, "data": data}


def bodies_from_metadata(
    metadata: dict[str, Any], seed: int = 0, count: int = GENERATED_BODIES
) -> tuple[bytes, ...]:
    """``count`` random V2 bodies fitting the declared inputs of ``metadata``."""
    inputs = metadata.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError(f"model metadata declares no inputs: {metadata!r}")
    rng = np.random.default_rng(seed)
    return tuple(v2_body([_random_tensor(spec, rng) for spec in inputs]) for _ in range(count))


def bodies_from_inputs(
    protocol: str, model: str, options: Sequence[str], metadata: dict[str, Any] | None = None
) -> bytes:
    """The one body that ``--input`` options describe."""
    if protocol == "openai":
        return openai_body(model, [parse_openai_input(o) for o in options])
    declared = declared_datatypes(metadata) if metadata else {}
    if model in KNOWN_V2_INPUTS:
        declared = {t["name"]: t["datatype"] for t in KNOWN_V2_INPUTS[model]} | declared
    return v2_body([parse_v2_input(o, declared) for o in options])


async def resolve_bodies(spec: LoadSpec, target: Target) -> tuple[bytes, ...]:
    """The request bodies of a run (see :class:`LoadSpec`); may GET the model metadata."""
    if spec.bodies:
        return spec.bodies
    metadata: dict[str, Any] | None = None
    if spec.protocol == "v2" and spec.model not in KNOWN_V2_INPUTS:
        metadata = await _metadata(spec, target, required=not spec.inputs)
    if spec.inputs:
        return (bodies_from_inputs(spec.protocol, spec.model, spec.inputs, metadata),)
    body = default_body(spec.protocol, spec.model)
    if body is not None:
        return (body,)
    assert metadata is not None
    return bodies_from_metadata(metadata, seed=spec.seed)


async def _metadata(spec: LoadSpec, target: Target, required: bool) -> dict[str, Any] | None:
    path = f"/v2/models/{spec.model}"
    try:
        status, body = await fetch(target, path, min(spec.timeout_s, 10.0), spec.headers())
        if status != 200:
            raise PayloadError(f"GET {target.url(path)} answered {status}: {body[:200]!r}")
        metadata = json.loads(body)
        if not isinstance(metadata, dict):
            raise PayloadError(f"GET {target.url(path)}: metadata is not a JSON object")
        return metadata
    except (OSError, ValueError) as exc:
        if not required:
            return None
        raise PayloadError(
            f"no payload for model {spec.model!r}: give --input or --payloads, or serve its "
            f"metadata ({exc})"
        ) from None
