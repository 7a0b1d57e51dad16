"""Open Inference Protocol (V2 / KServe v2) REST adapter: bodies <-> named tensors.

Bodies are JSON, or JSON followed by binary tensor data (:mod:`.v2_binary`, the Triton
extension tritonclient uses by default). Spec:
https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tailguard.serve.errors import BadRequest
from tailguard.serve.loader import ModelSignature
from tailguard.serve.protocols import v2_binary
from tailguard.tensors import V2_TO_NUMPY, Tensors, TensorSpec

_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded, validated V2 infer request."""

    id: str | None
    tensors: Tensors
    rows: int
    key: Hashable
    outputs: tuple[str, ...] | None  # requested outputs, None = all
    # Outputs answered as binary tensor data: named per output, else the request's default.
    binary_outputs: frozenset[str] = frozenset()
    binary_default: bool = False
    json_outputs: frozenset[str] = frozenset()

    def is_binary(self, output: str) -> bool:
        return output in self.binary_outputs or (
            self.binary_default and output not in self.json_outputs)


@dataclass(frozen=True, slots=True)
class InferResponse:
    """An encoded answer: ``header_length`` is set when binary tensors follow the JSON."""

    body: bytes
    header_length: int | None = None


def _load_json(body: bytes | memoryview, binary: bool) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = "" if binary else (
            "; binary tensor data needs the Inference-Header-Content-Length header "
            "(the length of the JSON part)")
        raise BadRequest(f"malformed JSON body: {exc}{hint}") from None


def _to_array(spec: TensorSpec, item: dict[str, Any], raw: memoryview | None) -> np.ndarray:
    name = spec.name
    shape = item.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if not spec.accepts_shape(shape):
        raise BadRequest(
            f"input {name!r}: shape {shape} does not match the declared shape "
            f"{list(spec.shape)} (-1 = any size)"
        )
    if raw is not None:
        if "data" in item:
            raise BadRequest(f"input {name!r}: has both 'data' and binary_data_size; "
                             "send one")
        return v2_binary.to_array(spec, shape, raw)
    if "data" not in item:
        raise BadRequest(f"input {name!r}: 'data' is missing (or, for binary tensor data, "
                         "'parameters': {'binary_data_size': N})")
    data = item["data"]
    expected = math.prod(shape)
    try:
        if spec.datatype == "BYTES":
            flat = np.asarray(data, dtype=object).reshape(-1)
            array = np.empty(flat.size, dtype=object)
            for i, value in enumerate(flat):
                if isinstance(value, str):
                    array[i] = value.encode("utf-8")
                elif isinstance(value, bytes):
                    array[i] = value
                else:
                    raise BadRequest(f"input {name!r}: BYTES data must be strings, "
                                     f"got {type(value).__name__}")
        else:
            array = np.asarray(data, dtype=V2_TO_NUMPY[spec.datatype])
            if array.ndim != 1:
                array = array.reshape(-1)
    except (ValueError, TypeError) as exc:
        raise BadRequest(
            f"input {name!r}: data does not fit datatype {spec.datatype} with shape {shape} "
            f"({exc})"
        ) from None
    if array.size != expected:
        raise BadRequest(
            f"input {name!r}: shape {shape} needs {expected} values, data has {array.size}"
        )
    return array.reshape(shape)


def decode_infer(body: bytes, signature: ModelSignature,
                 header_length: int | None = None) -> InferRequest:
    """Parse and validate a V2 infer body against the model's declared inputs.

    ``header_length`` (the Inference-Header-Content-Length header) splits the body into its
    JSON part and the binary tensor data that follows it."""
    head, tail = v2_binary.split_body(body, header_length)
    doc = _load_json(head, header_length is not None)
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    declared = {s.name: s for s in signature.inputs}
    given: dict[str, dict[str, Any]] = {}
    raws: dict[str, memoryview] = {}
    pos = 0
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each input must be an object with a 'name'")
        if item["name"] in given:
            raise BadRequest(f"input {item['name']!r} is given twice")
        given[item["name"]] = item
        # Binary chunks follow the JSON in the order the inputs are listed.
        size = v2_binary.binary_size(
            item["name"], v2_binary.parameters(item, f"input {item['name']!r}"))
        if size is not None:
            if header_length is None:
                raise BadRequest(f"input {item['name']!r} has binary_data_size but the request "
                                 "has no Inference-Header-Content-Length header")
            if pos + size > len(tail):
                raise BadRequest(f"input {item['name']!r}: binary_data_size {size} runs past "
                                 f"the {len(tail)} bytes of binary data in the body")
            raws[item["name"]] = tail[pos:pos + size]
            pos += size
    if pos != len(tail):
        raise BadRequest(f"the body has {len(tail)} bytes after the JSON header, the inputs' "
                         f"binary_data_size account for {pos}")
    if given.keys() != declared.keys():
        missing = sorted(set(declared) - set(given))
        extra = sorted(set(given) - set(declared))
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if extra:
            parts.append(f"unexpected input(s) {extra}")
        raise BadRequest("; ".join(parts) + f"; the model takes {sorted(declared)}")
    tensors: Tensors = {}
    rows: int | None = None
    key: list[Hashable] = []
    for name, spec in declared.items():
        item = given[name]
        if item.get("datatype") != spec.datatype:
            raise BadRequest(
                f"input {name!r}: datatype {item.get('datatype')!r} does not match the "
                f"declared {spec.datatype}"
            )
        array = _to_array(spec, item, raws.get(name))
        if rows is None:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            raise BadRequest(f"inputs disagree on the batch size: {name!r} has "
                             f"{array.shape[0]} rows, others {rows}")
        tensors[name] = array
        key.append(array.shape[1:])
    assert rows is not None
    if rows == 0:
        raise BadRequest("empty batch: the inputs have 0 rows")
    outputs, binary, as_json = _requested_outputs(doc.get("outputs"), signature)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    default = v2_binary.parameters(doc, "request").get("binary_data_output", False)
    if type(default) is not bool:
        raise BadRequest("parameter 'binary_data_output' must be true or false")
    return InferRequest(request_id, tensors, rows, tuple(key), outputs, binary, default, as_json)


def _requested_outputs(value: Any, signature: ModelSignature
                       ) -> tuple[tuple[str, ...] | None, frozenset[str], frozenset[str]]:
    """(names, those asked as binary, those asked as JSON) of the requested outputs."""
    if value is None:
        return None, frozenset(), frozenset()
    if not isinstance(value, list) or not all(isinstance(o, dict) and "name" in o for o in value):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = tuple(str(o["name"]) for o in value)
    known = {s.name for s in signature.outputs}
    unknown = sorted(set(names) - known)
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; the model returns {sorted(known)}")
    binary: set[str] = set()
    as_json: set[str] = set()
    for o in value:
        flag = v2_binary.parameters(o, f"output {o['name']!r}").get("binary_data")
        if flag is None:
            continue
        if type(flag) is not bool:
            raise BadRequest(f"output {o['name']!r}: binary_data must be true or false")
        (binary if flag else as_json).add(str(o["name"]))
    return names, frozenset(binary), frozenset(as_json)


def _tensor_json(name: str, spec: TensorSpec | None, array: np.ndarray) -> dict[str, Any]:
    datatype = spec.datatype if spec is not None else "FP32"
    if datatype == "BYTES":
        data: Any = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
                     for v in array.reshape(-1)]
    else:
        data = np.ascontiguousarray(array).reshape(-1)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("="))
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def encode_infer(model: str, version: str, request: InferRequest, outputs: Tensors,
                 signature: ModelSignature) -> InferResponse:
    specs = {s.name: s for s in signature.outputs}
    names = request.outputs if request.outputs is not None else tuple(outputs)
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        doc["id"] = request.id
    tensors: list[dict[str, Any]] = []
    binary: list[bytes | memoryview] = []
    for n in names:
        if not request.is_binary(n):
            tensors.append(_tensor_json(n, specs.get(n), outputs[n]))
            continue
        spec = specs.get(n)
        datatype = spec.datatype if spec is not None else "FP32"
        data = v2_binary.to_bytes(datatype, outputs[n])
        binary.append(data)
        tensors.append({"name": n, "datatype": datatype, "shape": list(outputs[n].shape),
                        "parameters": {"binary_data_size": len(data)}})
    doc["outputs"] = tensors
    head = orjson.dumps(doc, option=_DUMP_OPTS)
    if not binary:
        return InferResponse(head)
    return InferResponse(b"".join([head, *binary]), len(head))


def model_metadata(model: str, version: str, signature: ModelSignature) -> dict[str, Any]:
    return {
        "name": model,
        "versions": [version],
        "platform": signature.platform,
        "inputs": [s.to_dict() for s in signature.inputs],
        "outputs": [s.to_dict() for s in signature.outputs],
    }
