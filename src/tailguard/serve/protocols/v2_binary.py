"""The KServe/Triton binary tensor data extension: tensors as raw bytes after the JSON header.

What tritonclient and perf_analyzer send by default. A request (or response) body is
``JSON header | tensor bytes``; the ``Inference-Header-Content-Length`` HTTP header gives the
JSON's length, and each binary tensor names its byte count in
``parameters.binary_data_size``, in the order the tensors are listed. Numeric tensors are
their little-endian values, row major; BYTES tensors are ``u32 little-endian length | bytes``
per element. Spec: https://github.com/triton-inference-server/server/blob/main/docs/protocol/
extension_binary_data.md

Numeric inputs are numpy views of the request body: no copy until the batcher concatenates
requests into the batch frame (and a batch of one request travels to the replica as is).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from tailguard.serve.errors import BadRequest
from tailguard.tensors import V2_TO_NUMPY, TensorSpec, encode_bytes_tensor

HEADER_LENGTH = b"inference-header-content-length"
EXTENSION = "binary_tensor_data"
_U32 = struct.Struct("<I")

# Triton extensions a client may ask for through tensor or request parameters; each is
# refused by name rather than silently ignored.
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "shared-memory (system/CUDA shared memory)",
    "shared_memory_byte_size": "shared-memory (system/CUDA shared memory)",
    "shared_memory_offset": "shared-memory (system/CUDA shared memory)",
    "classification": "classification",
}


def header_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Inference-Header-Content-Length`` value, or None when the body is all JSON."""
    for name, value in headers:
        if name == HEADER_LENGTH:
            try:
                length = int(value)
            except ValueError:
                raise BadRequest(f"Inference-Header-Content-Length must be an integer, "
                                 f"got {value.decode(errors='replace')!r}") from None
            if length < 0:
                raise BadRequest("Inference-Header-Content-Length must not be negative")
            return length
    return None


def split_body(body: bytes, length: int | None) -> tuple[memoryview, memoryview]:
    """(JSON header, binary tail) of a request body."""
    view = memoryview(body)
    if length is None:
        return view, view[len(view):]
    if length > len(view):
        raise BadRequest(f"Inference-Header-Content-Length is {length} but the body has "
                         f"only {len(view)} bytes")
    return view[:length], view[length:]


def parameters(item: dict[str, Any], what: str) -> dict[str, Any]:
    """A tensor's or request's ``parameters``, refusing the extensions tailguard lacks."""
    params = item.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{what}: 'parameters' must be an object")
    for key, extension in _UNSUPPORTED_PARAMETERS.items():
        if key in params and (key != "classification" or params[key]):
            raise BadRequest(f"{what}: parameter {key!r} needs the Triton {extension} "
                             f"extension, which tailguard does not support; send the data "
                             f"in the body (JSON or binary tensor data)")
    return params


def binary_size(name: str, params: dict[str, Any]) -> int | None:
    size = params.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
    return size


def to_array(spec: TensorSpec, shape: list[int], raw: memoryview) -> np.ndarray:
    """A tensor from its binary form: a view of ``raw`` for numeric types."""
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        return _bytes_elements(spec.name, raw, count).reshape(shape)
    dtype = V2_TO_NUMPY[spec.datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(f"input {spec.name!r}: shape {shape} of {spec.datatype} needs "
                         f"{count * dtype.itemsize} bytes, binary_data_size is {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos, end = 0, len(raw)
    for i in range(count):
        if end - pos < 4:
            raise BadRequest(f"input {name!r}: BYTES binary data ends after {i} of {count} "
                             "elements (each is a 4-byte little-endian length, then the bytes)")
        (size,) = _U32.unpack_from(raw, pos)
        pos += 4
        if end - pos < size:
            raise BadRequest(f"input {name!r}: BYTES element {i} declares {size} bytes, "
                             f"only {end - pos} remain")
        out[i] = bytes(raw[pos:pos + size])
        pos += size
    if pos != end:
        raise BadRequest(f"input {name!r}: {end - pos} bytes left over after the {count} BYTES "
                         "elements of its shape")
    return out


def to_bytes(datatype: str, array: np.ndarray) -> bytes | memoryview:
    """A response tensor's binary form (a view of the array for numeric types)."""
    if datatype == "BYTES":
        return encode_bytes_tensor(array)
    array = np.ascontiguousarray(array, dtype=V2_TO_NUMPY[datatype].newbyteorder("<"))
    return array.data.cast("B") if array.size else b""
