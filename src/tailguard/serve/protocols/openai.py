"""OpenAI-compatible adapter: ``POST /v1/embeddings`` and ``GET /v1/models``.

A deployment is usable for embeddings when it takes one BYTES input (the texts) and returns an
FP32 ``embedding`` output (rows x dim); an INT64 ``tokens`` output, if any, fills ``usage``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tailguard.serve.errors import BadRequest
from tailguard.serve.loader import ModelSignature
from tailguard.tensors import Tensors


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    model: str
    texts: list[str]
    encoding_format: str


def error_body(message: str, status: int, param: str | None = None) -> bytes:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param,
                                   "code": status}})


def embeddings_capable(signature: ModelSignature) -> bool:
    ins = [s for s in signature.inputs if s.datatype == "BYTES"]
    outs = [s for s in signature.outputs if s.name == "embedding" and s.datatype == "FP32"]
    return len(signature.inputs) == 1 and len(ins) == 1 and len(outs) == 1


def decode_embeddings(body: bytes) -> EmbeddingsRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required (a deployment name)")
    value = doc.get("input")
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        texts = value
    elif isinstance(value, list) and not value:
        raise BadRequest("'input' is an empty list: send at least one string")
    else:
        raise BadRequest("'input' must be a string or a list of strings "
                         "(token arrays are not supported)")
    fmt = doc.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'")
    return EmbeddingsRequest(model, texts, fmt)


def to_tensors(request: EmbeddingsRequest, signature: ModelSignature) -> Tensors:
    array = np.empty(len(request.texts), dtype=object)
    for i, text in enumerate(request.texts):
        array[i] = text.encode("utf-8")
    return {signature.inputs[0].name: array}


def encode_embeddings(request: EmbeddingsRequest, outputs: Tensors) -> bytes:
    vectors = np.ascontiguousarray(outputs["embedding"], dtype=np.float32)
    tokens = int(outputs["tokens"].sum()) if "tokens" in outputs else 0
    data: list[dict[str, Any]] = []
    for i, row in enumerate(vectors):
        emb: Any = (base64.b64encode(row.astype("<f4").tobytes()).decode()
                    if request.encoding_format == "base64" else row)
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return orjson.dumps(
        {"object": "list", "data": data, "model": request.model,
         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def models_list(names: list[str], created: int) -> bytes:
    return orjson.dumps({"object": "list", "data": [
        {"id": n, "object": "model", "created": created, "owned_by": "tailguard"} for n in names
    ]})
