"""Every kind of bad input gets a 4xx JSON error naming the problem; the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import ServerProcess

GOOD = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _input(**over: object) -> dict[str, object]:
    return {"inputs": [{**GOOD["inputs"][0], **over}]}  # type: ignore[dict-item]


CASES = [
    ("malformed json", "/v2/models/echo/infer", b'{"inputs": [', 400, "malformed JSON"),
    ("not an object", "/v2/models/echo/infer", b"[1, 2]", 400, "JSON object"),
    ("no inputs", "/v2/models/echo/infer", b'{"inputs": []}', 400, "non-empty list"),
    ("missing input", "/v2/models/minilm/infer", GOOD, 400, "missing input(s) ['text']"),
    ("extra input", "/v2/models/echo/infer",
     {"inputs": [*GOOD["inputs"], {"name": "EXTRA", "datatype": "FP32", "shape": [1],
                                   "data": [1]}]}, 400, "unexpected input(s) ['EXTRA']"),
    ("wrong datatype", "/v2/models/echo/infer", _input(datatype="INT32"), 400,
     "datatype 'INT32' does not match the declared FP32"),
    ("shape/data mismatch", "/v2/models/echo/infer", _input(shape=[2, 2]), 400,
     "needs 4 values, data has 2"),
    ("rank mismatch", "/v2/models/echo/infer", _input(shape=[2]), 400,
     "does not match the declared shape"),
    ("data not numeric", "/v2/models/echo/infer", _input(data=["a", "b"]), 400,
     "does not fit datatype FP32"),
    ("empty batch", "/v2/models/echo/infer", _input(shape=[0, 2], data=[]), 400, "empty batch"),
    ("unknown output", "/v2/models/echo/infer", {**GOOD, "outputs": [{"name": "NOPE"}]}, 400,
     "unknown output(s) ['NOPE']"),
    ("unknown model", "/v2/models/nope/infer", GOOD, 404, "unknown model 'nope'"),
    ("unknown version", "/v2/models/echo/versions/9/infer", GOOD, 404, "no version '9'"),
    ("too large", "/v2/models/echo/infer",
     _input(shape=[1, 20000], data=[1.0] * 20000), 413, "exceeds the 65536-byte limit"),
    ("openai empty list", "/v1/embeddings", {"model": "minilm", "input": []}, 400,
     "empty list"),
    ("openai tokens", "/v1/embeddings", {"model": "minilm", "input": [[1, 2]]}, 400,
     "list of strings"),
    ("openai not embedding model", "/v1/embeddings", {"model": "echo", "input": "hi"}, 400,
     "does not produce embeddings"),
    ("openai unknown model", "/v1/embeddings", {"model": "gpt-9", "input": "hi"}, 404,
     "unknown model"),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input(builtin_server: ServerProcess, case: str, path: str, body: object,
                   status: int, message: str) -> None:
    if isinstance(body, bytes):
        resp = builtin_server.post(path, content=body)
    else:
        resp = builtin_server.post(path, json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    text = error["message"] if isinstance(error, dict) else error
    assert message in text
    # ... and the server still serves.
    assert builtin_server.post("/v2/models/echo/infer", json=GOOD).status_code == 200


def test_unknown_model_metadata_is_404(builtin_server: ServerProcess) -> None:
    assert builtin_server.get("/v2/models/nope").status_code == 404
    assert builtin_server.get("/v2/models/nope/ready").status_code == 404
    assert builtin_server.get("/no/such/route").status_code == 404


def test_model_level_error_does_not_fail_batch_mates(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server({"deployments": [
        {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "max_batch_size": 16,
         "max_wait_ms": 50, "options": {"sleep_ms": 5}}]}).wait_ready()

    def body(first: float) -> dict[str, object]:
        return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [first]}]}

    import concurrent.futures as cf

    with httpx.Client(timeout=30) as client, cf.ThreadPoolExecutor(8) as pool:
        url = server.url + "/v2/models/sleep/infer"
        futures = [pool.submit(client.post, url, json=body(-1.0 if i == 3 else float(i)))
                   for i in range(8)]
        statuses = [f.result().status_code for f in futures]
    assert statuses[3] == 400
    assert statuses[:3] + statuses[4:] == [200] * 7
