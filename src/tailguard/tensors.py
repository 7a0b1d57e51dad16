"""Named tensors: the one internal currency between protocols, batcher and models.

A batch is a ``dict[str, numpy.ndarray]`` whose arrays share a leading row dimension.
V2 ``BYTES`` tensors are numpy object arrays holding ``bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Tensors = dict[str, np.ndarray]

# Open Inference Protocol (V2) datatypes and their numpy equivalents.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_V2: dict[np.dtype, str] = {v: k for k, v in V2_TO_NUMPY.items()}


def v2_datatype(array: np.ndarray) -> str:
    """The V2 datatype name of a numpy array (object/str/bytes arrays are BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise ValueError(f"numpy dtype {array.dtype} has no V2 datatype") from None


@dataclass(frozen=True)
class TensorSpec:
    """Declared input or output of a model: name, V2 datatype, shape (-1 = variable).

    The shape includes the leading batch dimension, which is always -1.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in V2_TO_NUMPY:
            raise ValueError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"use one of {sorted(V2_TO_NUMPY)}"
            )
        if not self.shape or any((d < 1 and d != -1) for d in self.shape):
            raise ValueError(
                f"tensor {self.name!r}: shape {self.shape} must be non-empty, "
                "with positive sizes or -1 for variable dimensions"
            )

    @property
    def numpy_dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TensorSpec:
        shape = data.get("shape", [-1])
        assert isinstance(shape, list | tuple)
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in shape))

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` (with its row dimension) matches this declaration."""
        if len(shape) != len(self.shape):
            return False
        for want, got in zip(self.shape, shape, strict=True):
            if want != -1 and want != got:
                return False
        return True


_LENGTH = struct.Struct("<I")


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    """A BYTES tensor in the KServe/Triton binary form, also the replica frames' form: each
    element as a 4-byte little-endian length, then its bytes (a ``str`` as UTF-8)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)
