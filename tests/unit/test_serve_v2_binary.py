"""The binary tensor data extension (pure): bodies as tritonclient builds them by default."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from tailguard.serve.errors import BadRequest
from tailguard.serve.loader import ModelSignature
from tailguard.serve.protocols import v2, v2_binary, v2_routes
from tailguard.tensors import TensorSpec

SIG = ModelSignature(
    inputs=(TensorSpec("x", "FP32", (-1, 3)), TensorSpec("t", "BYTES", (-1,))),
    outputs=(TensorSpec("y", "FP32", (-1, 3)), TensorSpec("s", "BYTES", (-1,))),
    platform="test",
)


def _bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def _binary_body(x: np.ndarray, t: list[bytes], **doc_over: object) -> tuple[bytes, int]:
    """What tritonclient's set_data_from_numpy(arr) (binary_data=True) sends."""
    raw_t = _bytes_tensor(t)
    doc = {"inputs": [
        {"name": "t", "datatype": "BYTES", "shape": [len(t)],
         "parameters": {"binary_data_size": len(raw_t)}},
        {"name": "x", "datatype": "FP32", "shape": list(x.shape),
         "parameters": {"binary_data_size": x.nbytes}},
    ]}
    doc.update(doc_over)
    head = orjson.dumps(doc)
    return head + raw_t + x.astype("<f4").tobytes(), len(head)


def test_binary_inputs_decode_in_listed_order_as_views() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, length = _binary_body(x, [b"ab", "\u00e9\xff".encode("latin-1")])
    req = v2.decode_infer(body, SIG, length)
    np.testing.assert_array_equal(req.tensors["x"], x)
    assert req.tensors["t"].tolist() == [b"ab", b"\xe9\xff"]  # not UTF-8: binary is fine
    assert req.rows == 2
    # Zero-copy: the numeric tensor is a view of the request body.
    assert np.shares_memory(req.tensors["x"], np.frombuffer(body, dtype=np.uint8))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b, n: (b + b"x", n), "account for"),
    (lambda b, n: (b[:-1], n), "runs past"),
    (lambda b, n: (b, None), "needs the Inference-Header-Content-Length header"),
    (lambda b, n: (b, len(b) + 1), "only"),
])
def test_inconsistent_binary_bodies_are_named(mutate, message) -> None:  # type: ignore[no-untyped-def]
    body, length = _binary_body(np.zeros((1, 3), np.float32), [b"a"])
    body, length = mutate(body, length)
    with pytest.raises(BadRequest, match=message):
        v2.decode_infer(body, SIG, length)


def test_bytes_element_overrun_and_leftover() -> None:
    spec = TensorSpec("t", "BYTES", (-1,))
    with pytest.raises(BadRequest, match="declares 9 bytes"):
        v2_binary.to_array(spec, [1], memoryview(struct.pack("<I", 9) + b"abc"))
    with pytest.raises(BadRequest, match="left over"):
        v2_binary.to_array(spec, [1], memoryview(_bytes_tensor([b"a", b"b"])))
    with pytest.raises(BadRequest, match="needs 12 bytes"):
        v2_binary.to_array(TensorSpec("x", "FP32", (-1, 3)), [1, 3], memoryview(b"\0" * 8))


def test_binary_without_header_says_what_is_missing() -> None:
    body, _ = _binary_body(np.zeros((1, 3), np.float32), [b"\xff"])
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        v2.decode_infer(body, SIG)


def test_binary_outputs_on_request_parameter_and_per_output() -> None:
    body, length = _binary_body(np.ones((2, 3), np.float32), [b"a", b"b"],
                                parameters={"binary_data_output": True})
    req = v2.decode_infer(body, SIG, length)
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array([b"p", b"qq"], dtype=object)
    answer = v2.encode_infer("m", "1", req, {"y": y, "s": s}, SIG)
    assert answer.header_length is not None
    head = orjson.loads(answer.body[:answer.header_length])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [24, len(_bytes_tensor([b"p", b"qq"]))]
    tail = answer.body[answer.header_length:]
    np.testing.assert_array_equal(np.frombuffer(tail[:24], "<f4").reshape(2, 3), y)
    assert tail[24:] == _bytes_tensor([b"p", b"qq"])
    # Per-output binary_data overrides the request default, either way.
    body, length = _binary_body(np.ones((2, 3), np.float32), [b"a", b"b"],
                                outputs=[{"name": "y", "parameters": {"binary_data": True}},
                                         {"name": "s", "parameters": {"binary_data": False}}])
    answer = v2.encode_infer("m", "1", v2.decode_infer(body, SIG, length), {"y": y, "s": s}, SIG)
    assert answer.header_length is not None
    head = orjson.loads(answer.body[:answer.header_length])
    assert head["outputs"][1]["data"] == ["p", "qq"] and "data" not in head["outputs"][0]


def test_json_requests_still_answer_json() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
                      {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    req = v2.decode_infer(orjson.dumps(doc), SIG)
    answer = v2.encode_infer("m", "1", req, {"y": req.tensors["x"], "s": req.tensors["t"]}, SIG)
    assert answer.header_length is None and orjson.loads(answer.body)["outputs"]


@pytest.mark.parametrize("params", [{"shared_memory_region": "r"}, {"classification": 3}])
def test_unsupported_extensions_are_named(params: dict[str, object]) -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
                      {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
           "outputs": [{"name": "y", "parameters": params}]}
    with pytest.raises(BadRequest, match="extension, which tailguard does not support"):
        v2.decode_infer(orjson.dumps(doc), SIG)


def test_model_config_and_repository_index() -> None:
    config = v2_routes.model_config("m", 8, SIG)
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]},
                               {"name": "t", "data_type": "TYPE_STRING", "dims": [1]}]
    assert v2_routes.repository_index([("m", "1", True)]) == [
        {"name": "m", "version": "1", "state": "READY", "reason": ""}]
