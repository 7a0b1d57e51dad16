"""V2 request decoding and response encoding (pure)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tailguard.serve.errors import BadRequest
from tailguard.serve.loader import ModelSignature
from tailguard.serve.protocols import openai, v2
from tailguard.tensors import TensorSpec

SIG = ModelSignature(
    inputs=(TensorSpec("x", "FP32", (-1, 3)), TensorSpec("t", "BYTES", (-1,))),
    outputs=(TensorSpec("y", "INT64", (-1,)),),
    platform="test",
)


def _body(**over: object) -> bytes:
    doc = {"id": "r", "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]},
        {"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a", "b\u00e9"]},
    ]}
    doc.update(over)
    return orjson.dumps(doc)


def test_decode_nested_data_and_bytes() -> None:
    req = v2.decode_infer(_body(), SIG)
    assert req.rows == 2 and req.id == "r"
    assert req.tensors["x"].dtype == np.float32 and req.tensors["x"].shape == (2, 3)
    assert req.tensors["t"].tolist() == [b"a", "b\u00e9".encode()]
    assert req.key == ((3,), ())


def test_rows_must_agree_across_inputs() -> None:
    body = orjson.loads(_body())
    body["inputs"][1]["shape"] = [1]
    body["inputs"][1]["data"] = ["a"]
    with pytest.raises(BadRequest, match="disagree on the batch size"):
        v2.decode_infer(orjson.dumps(body), SIG)


def test_fixed_dimension_is_enforced() -> None:
    body = orjson.loads(_body())
    body["inputs"][0]["shape"] = [3, 2]
    with pytest.raises(BadRequest, match=r"does not match the declared shape \[-1, 3\]"):
        v2.decode_infer(orjson.dumps(body), SIG)


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(BadRequest, match="'id' must be a string"):
        v2.decode_infer(_body(id=5), SIG)


def test_encode_filters_requested_outputs() -> None:
    req = v2.decode_infer(_body(outputs=[{"name": "y"}]), SIG)
    out = orjson.loads(v2.encode_infer("m", "1", req, {"y": np.array([7, 8])}, SIG).body)
    assert out == {"model_name": "m", "model_version": "1", "id": "r", "outputs": [
        {"name": "y", "datatype": "INT64", "shape": [2], "data": [7, 8]}]}


def test_openai_base64_decodes_to_the_same_floats() -> None:
    import base64

    req = openai.decode_embeddings(b'{"model": "m", "input": ["a"], "encoding_format": "base64"}')
    vec = np.array([[0.25, -1.5]], dtype=np.float32)
    doc = orjson.loads(openai.encode_embeddings(req, {"embedding": vec, "tokens": np.array([4])}))
    raw = base64.b64decode(doc["data"][0]["embedding"])
    assert np.frombuffer(raw, dtype="<f4").tolist() == [0.25, -1.5]
    assert doc["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
