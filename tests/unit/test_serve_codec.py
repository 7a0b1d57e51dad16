"""Gateway<->replica wire codec: round trips, framing across arbitrary chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.serve.replicas.codec import CodecError, FrameReader, decode, encode
from tailguard.serve.replicas.messages import (
    BatchError,
    BatchRequest,
    BatchResult,
    ErrorKind,
    Ready,
    SetupFailed,
    Stop,
)


def _frame(msg: object) -> bytes:
    return b"".join(bytes(b) for b in encode(msg))  # type: ignore[arg-type]


def test_tensors_round_trip_without_loss() -> None:
    tensors = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i": np.array([1, -2, 3], dtype=np.int64),
        "b": np.array([True, False, True]),
        "s": np.array([b"hello", "h\u00e9".encode(), b""], dtype=object),
        "h": np.ones((3, 2), dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    out = decode(memoryview(_frame(BatchRequest(5, tensors)))[4:])
    assert isinstance(out, BatchRequest) and out.batch_id == 5
    for name, array in tensors.items():
        np.testing.assert_array_equal(out.tensors[name], array)
        assert out.tensors[name].dtype == array.dtype


def test_numeric_tensors_are_not_pickled_and_one_frame_per_batch() -> None:
    big = np.random.default_rng(0).random((256, 64)).astype(np.float32)
    buffers = encode(BatchResult(1, {"y": big}, 0.001))
    assert sum(len(b) for b in buffers[2:]) == big.nbytes  # raw bytes, nothing more
    reader = FrameReader()
    assert len(reader.feed(b"".join(bytes(b) for b in buffers))) == 1


@pytest.mark.parametrize("msg", [Ready(12, 0.5), SetupFailed("boom"), Stop(),
                                 BatchError(3, ErrorKind.BAD_INPUT, "bad")])
def test_control_messages_round_trip(msg: object) -> None:
    assert decode(memoryview(_frame(msg))[4:]) == msg


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=20), st.integers(1, 64))
def test_frame_reader_handles_any_chunking(rows: list[int], chunk: int) -> None:
    msgs = [BatchRequest(i, {"x": np.full((r, 2), i, dtype=np.float32)})
            for i, r in enumerate(rows)]
    stream = b"".join(_frame(m) for m in msgs)
    reader = FrameReader()
    frames = []
    for pos in range(0, len(stream), chunk):
        frames.extend(reader.feed(stream[pos:pos + chunk]))
    decoded = [decode(f) for f in frames]
    assert [d.batch_id for d in decoded] == list(range(len(rows)))  # type: ignore[union-attr]
    assert [len(d.tensors["x"]) for d in decoded] == rows  # type: ignore[union-attr]


def test_corrupt_header_is_a_codec_error() -> None:
    frame = bytearray(_frame(Stop()))
    frame[8] = ord("{") ^ 0xFF
    with pytest.raises(CodecError):
        decode(memoryview(bytes(frame))[4:])
