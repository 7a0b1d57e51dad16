"""Wire format between gateway and replicas: one length-prefixed frame per message.

``u32 frame_len | u32 header_len | header (JSON) | tensor buffers``. The header lists every tensor
as ``[name, datatype, shape, nbytes]``; numeric tensors travel as their raw bytes (no pickling, no
per-row work), BYTES tensors as ``u32 length + bytes`` per element (the V2 binary layout).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from tailguard.serve.replicas.messages import (
    BatchError,
    BatchRequest,
    BatchResult,
    ErrorKind,
    Message,
    Ready,
    SetupFailed,
    Stop,
)
from tailguard.tensors import V2_TO_NUMPY, Tensors, encode_bytes_tensor, v2_datatype

_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<II")
MAX_FRAME_BYTES = 1 << 31


class CodecError(Exception):
    """A frame could not be decoded (corrupt stream or protocol mismatch)."""


def _decode_bytes_tensor(buf: memoryview, shape: list[int]) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        (size,) = _U32.unpack_from(buf, pos)
        pos += 4
        out[i] = bytes(buf[pos : pos + size])
        pos += size
    return out.reshape(shape)


def _encode_tensors(tensors: Tensors) -> tuple[list[list[Any]], list[bytes | memoryview]]:
    meta: list[list[Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, array in tensors.items():
        array = np.asarray(array)
        datatype = v2_datatype(array)
        if datatype == "BYTES":
            data: bytes | memoryview = encode_bytes_tensor(array)
        else:
            array = np.ascontiguousarray(array)
            data = array.data.cast("B") if array.size else b""
        meta.append([name, datatype, list(array.shape), len(data)])
        buffers.append(data)
    return meta, buffers


def _decode_tensors(meta: list[list[Any]], payload: memoryview) -> Tensors:
    tensors: Tensors = {}
    pos = 0
    for name, datatype, shape, nbytes in meta:
        chunk = payload[pos : pos + nbytes]
        pos += nbytes
        if datatype == "BYTES":
            tensors[name] = _decode_bytes_tensor(chunk, shape)
        else:
            dtype = V2_TO_NUMPY[datatype]
            tensors[name] = np.frombuffer(chunk, dtype=dtype).reshape(shape)
    if pos != len(payload):
        raise CodecError(f"frame payload has {len(payload)} bytes, tensors account for {pos}")
    return tensors


def encode(msg: Message) -> list[bytes | memoryview]:
    """Encode one message as a list of buffers ready for ``writelines`` (no extra copy)."""
    buffers: list[bytes | memoryview] = []
    header: dict[str, Any]
    if isinstance(msg, BatchRequest | BatchResult):
        meta, buffers = _encode_tensors(msg.tensors)
        header = {"k": "req" if isinstance(msg, BatchRequest) else "res", "id": msg.batch_id,
                  "t": meta}
        if isinstance(msg, BatchResult):
            header["s"] = msg.service_s
        elif msg.traceparent is not None:
            header["tp"] = msg.traceparent
    elif isinstance(msg, BatchError):
        header = {"k": "err", "id": msg.batch_id, "kind": msg.kind.value, "e": msg.error}
    elif isinstance(msg, Ready):
        header = {"k": "ready", "pid": msg.pid, "s": msg.setup_s}
    elif isinstance(msg, SetupFailed):
        header = {"k": "setup_failed", "e": msg.error}
    elif isinstance(msg, Stop):
        header = {"k": "stop"}
    else:  # pragma: no cover - exhaustive over Message
        raise CodecError(f"cannot encode {type(msg).__name__}")
    head = orjson.dumps(header)
    total = 4 + len(head) + sum(len(b) for b in buffers)
    if total >= MAX_FRAME_BYTES:
        raise CodecError(f"message of {total} bytes exceeds the 2 GiB frame limit")
    return [_HEAD.pack(total, len(head)), head, *buffers]


def decode(frame: memoryview) -> Message:
    """Decode one frame body (everything after ``frame_len``)."""
    (head_len,) = _U32.unpack_from(frame, 0)
    try:
        header = orjson.loads(frame[4 : 4 + head_len])
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"bad frame header: {exc}") from exc
    kind = header.get("k")
    payload = frame[4 + head_len :]
    if kind == "req":
        return BatchRequest(header["id"], _decode_tensors(header["t"], payload),
                            header.get("tp"))
    if kind == "res":
        return BatchResult(header["id"], _decode_tensors(header["t"], payload), header["s"])
    if kind == "err":
        return BatchError(header["id"], ErrorKind(header["kind"]), header["e"])
    if kind == "ready":
        return Ready(header["pid"], header["s"])
    if kind == "setup_failed":
        return SetupFailed(header["e"])
    if kind == "stop":
        return Stop()
    raise CodecError(f"unknown message kind {kind!r}")


class FrameReader:
    """Accumulates stream bytes and yields complete frame bodies."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[memoryview]:
        self._buf += data
        frames: list[memoryview] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= 4:
            (size,) = _U32.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            # Copy out: the frame must outlive later mutations of the buffer.
            frames.append(memoryview(bytes(buf[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames
