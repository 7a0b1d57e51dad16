"""Request bodies: built-in defaults, --input options, metadata-generated data, JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailguard.load.payloads import (
    PayloadError,
    bodies_from_inputs,
    bodies_from_metadata,
    default_body,
    parse_v2_input,
    read_payloads_file,
    route,
)


def test_routes() -> None:
    assert route("v2", "echo") == "/v2/models/echo/infer"
    assert route("openai", "minilm") == "/v1/embeddings"


def test_default_bodies_are_what_the_server_expects() -> None:
    echo = json.loads(default_body("v2", "echo") or b"")
    assert echo == {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
                                "data": [[0.1, 0.2, 0.3, 0.4]]}]}
    minilm = json.loads(default_body("v2", "minilm") or b"")
    assert minilm == {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                  "data": ["a sentence"]}]}
    openai = json.loads(default_body("openai", "minilm") or b"")
    assert openai == {"model": "minilm", "input": "a sentence"}
    assert default_body("v2", "unknown-model") is None


def test_v2_input_shapes_and_datatypes() -> None:
    t = parse_v2_input("INPUT0=[[1, 2, 3, 4]]", {"INPUT0": "FP32"})
    assert t == {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2, 3, 4]]}
    # Without a declaration the datatype is inferred from the JSON values.
    assert parse_v2_input("ids=[[1, 2]]")["datatype"] == "INT64"
    assert parse_v2_input("x=[0.5]")["datatype"] == "FP32"
    assert parse_v2_input("flags=[true, false]")["datatype"] == "BOOL"
    assert parse_v2_input("text=hello world") == {
        "name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello world"]}
    # An explicit datatype and shape win; flat data is laid out in that shape.
    t = parse_v2_input("INPUT0:fp32:2x2=[1, 2, 3, 4]")
    assert (t["datatype"], t["shape"], t["data"]) == ("FP32", [2, 2], [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("INPUT0", "NAME"),
        ("=[1]", "NAME"),
        ("x:FP32:2x2=[1, 2, 3]", "do not fill"),
        ("x:FP32:axb=[1]", "not like 1x4"),
        ("x:FLOAT=[1]", "unknown datatype"),
    ],
)
def test_bad_v2_inputs_say_what_to_fix(option: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_v2_input(option)


def test_inputs_of_a_known_model_take_its_datatypes() -> None:
    body = json.loads(bodies_from_inputs("v2", "echo", ["INPUT0=[[1, 2]]"]))
    assert body["inputs"][0]["datatype"] == "FP32"
    meta = {"inputs": [{"name": "ids", "datatype": "INT32", "shape": [-1, -1]}]}
    body = json.loads(bodies_from_inputs("v2", "custom", ["ids=[[1, 2]]"], meta))
    assert body["inputs"][0]["datatype"] == "INT32"


def test_openai_inputs() -> None:
    one = json.loads(bodies_from_inputs("openai", "minilm", ["input=hello"]))
    assert one == {"model": "minilm", "input": "hello"}
    two = json.loads(bodies_from_inputs("openai", "minilm", ["a", "b"]))
    assert two == {"model": "minilm", "input": ["a", "b"]}


def test_metadata_bodies_fit_the_declaration() -> None:
    meta = {
        "name": "m",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "mask", "datatype": "BOOL", "shape": [-1, 3]},
            {"name": "ids", "datatype": "UINT8", "shape": [-1, 2, -1]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
        ],
    }
    bodies = bodies_from_metadata(meta, seed=5, count=3)
    assert len(bodies) == 3
    assert len(set(bodies)) == 3  # random data differs between bodies
    assert bodies == bodies_from_metadata(meta, seed=5, count=3)  # but is seeded
    inputs = {t["name"]: t for t in json.loads(bodies[0])["inputs"]}
    assert inputs["x"]["shape"] == [1, 4]  # one row; variable dimensions are 4
    assert len(inputs["x"]["data"]) == 4
    assert all(isinstance(v, float) for v in inputs["x"]["data"])
    assert inputs["mask"]["shape"] == [1, 3]
    assert all(isinstance(v, bool) for v in inputs["mask"]["data"])
    assert inputs["ids"]["shape"] == [1, 2, 4]
    assert all(isinstance(v, int) and 0 <= v < 256 for v in inputs["ids"]["data"])
    assert inputs["text"]["shape"] == [1]
    assert isinstance(inputs["text"]["data"][0], str)


def test_metadata_without_inputs_is_an_error() -> None:
    with pytest.raises(PayloadError, match="declares no inputs"):
        bodies_from_metadata({"name": "m", "inputs": []})


def test_payloads_file(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"model": "m", "input": "a"}\n\n  {"model": "m", "input": "b"}  \n')
    assert read_payloads_file(path) == (b'{"model": "m", "input": "a"}',
                                        b'{"model": "m", "input": "b"}')


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "no request bodies"), ('{"a": 1}\n{oops\n', r"p.jsonl:2: not JSON"),
     ("[1, 2]\n", "JSON object")],
)
def test_bad_payloads_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(PayloadError, match=message):
        read_payloads_file(path)


def test_missing_payloads_file(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="cannot read"):
        read_payloads_file(tmp_path / "absent.jsonl")
