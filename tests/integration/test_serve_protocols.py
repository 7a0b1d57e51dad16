"""Real clients against a real server: tritonclient (V2), openai (embeddings), Prometheus."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ServerProcess


@pytest.fixture(scope="module")
def triton(builtin_server: ServerProcess):  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{builtin_server.port}")
    yield client
    client.close()


def test_triton_health_and_metadata(triton) -> None:  # type: ignore[no-untyped-def]
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("echo")
    assert not triton.is_model_ready("no-such-model")
    assert triton.get_server_metadata()["name"] == "tailguard"
    meta = triton.get_model_metadata("minilm")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in meta["outputs"]} == {"embedding", "tokens"}


def test_triton_infer_echo(triton) -> None:  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    data = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    inp = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    inp.set_data_from_numpy(data, binary_data=False)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)
    result = triton.infer("echo", [inp], outputs=[out], request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    assert result.get_response()["id"] == "req-7"


def test_triton_infer_minilm_bytes(triton) -> None:  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    texts = np.array([b"The cat sits outside", b"A man is playing guitar"], dtype=object)
    inp = httpclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts, binary_data=False)
    result = triton.infer("minilm", [inp],
                          outputs=[httpclient.InferRequestedOutput("embedding", binary_data=False)])
    emb = result.as_numpy("embedding")
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_triton_default_binary_echo(triton) -> None:  # type: ignore[no-untyped-def]
    """tritonclient's defaults: binary inputs and binary outputs (issue 19)."""
    import tritonclient.http as httpclient

    data = np.arange(24, dtype=np.float32).reshape(6, 4) / 3
    inp = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    result = triton.infer("echo", [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    assert "data" not in result.get_output("OUTPUT0")  # it came back as binary
    # No outputs named: tritonclient asks for every output as binary (binary_data_output).
    np.testing.assert_array_equal(triton.infer("echo", [inp]).as_numpy("OUTPUT0"), data)


def test_triton_default_binary_minilm_bytes(triton) -> None:  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    texts = np.array([b"The cat sits outside", "Un caf\u00e9 noir".encode()], dtype=object)
    inp = httpclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts)
    result = triton.infer("minilm", [inp],
                          outputs=[httpclient.InferRequestedOutput("embedding"),
                                   httpclient.InferRequestedOutput("tokens")])
    emb = result.as_numpy("embedding")
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert result.as_numpy("tokens").shape == (2,)


def test_triton_config_index_and_unsupported(triton, builtin_server: ServerProcess  # type: ignore[no-untyped-def]
                                             ) -> None:
    config = triton.get_model_config("echo")
    assert config["name"] == "echo" and config["input"][0]["data_type"] == "TYPE_FP32"
    index = {m["name"]: m for m in triton.get_model_repository_index()}
    assert set(index) == {"echo", "minilm"} and index["echo"]["state"] == "READY"
    refused = builtin_server.get("/v2/models/echo/stats")
    assert refused.status_code == 400
    assert "statistics extension is not supported" in refused.json()["error"]
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]


def test_openai_embeddings_similarity(builtin_server: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=builtin_server.url + "/v1", api_key="unused", max_retries=0)
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply today."]
    resp = client.embeddings.create(model="minilm", input=texts)  # base64 by default
    vecs = np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)])
    assert vecs.shape == (3, 384)
    assert resp.usage.prompt_tokens > 0
    paraphrase = float(vecs[0] @ vecs[1])
    unrelated = float(vecs[0] @ vecs[2])
    assert paraphrase > unrelated + 0.3
    single = client.embeddings.create(model="minilm", input="hello", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 384
    assert {m.id for m in client.models.list()} == {"echo", "minilm"}


def test_v2_nested_flat_and_version_routes(builtin_server: ServerProcess) -> None:
    body = {"id": "x", "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 2],
                                   "data": [[1, 2], [3, 4]]}]}
    nested = builtin_server.post("/v2/models/echo/versions/1/infer", json=body).json()
    body["inputs"][0]["data"] = [1, 2, 3, 4]
    flat = builtin_server.post("/v2/models/echo/infer", json=body).json()
    assert nested["outputs"] == flat["outputs"]
    assert flat["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0] and flat["id"] == "x"
    assert builtin_server.get("/v2").json()["name"] == "tailguard"
    assert builtin_server.get("/v2/models/echo/versions/1").json()["name"] == "echo"


def test_prometheus_metrics_parse(builtin_server: ServerProcess) -> None:
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}
    assert builtin_server.post("/v2/models/echo/infer", json=body).status_code == 200
    text = builtin_server.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("tailguard_requests", "tailguard_request_duration_seconds",
                 "tailguard_queue_wait_seconds", "tailguard_replica_service_seconds",
                 "tailguard_batch_size_rows", "tailguard_queue_depth",
                 "tailguard_replicas_ready"):
        assert name in families, name
    ok = [s for s in families["tailguard_requests"].samples
          if s.labels == {"deployment": "echo", "protocol": "v2", "status": "200"}]
    assert ok and ok[0].value >= 1
    ready = {s.labels["deployment"]: s.value for s in families["tailguard_replicas_ready"].samples}
    assert ready == {"echo": 1.0, "minilm": 1.0}
    # issue 19: process CPU and memory, the gateway's and each local replica's
    assert families["process_resident_memory_bytes"].samples[0].value > 10e6
    assert families["process_cpu_seconds"].samples[0].value > 0
    rss = {s.labels["deployment"]: s.value
           for s in families["tailguard_replica_resident_memory_bytes"].samples}
    assert set(rss) == {"echo", "minilm"} and min(rss.values()) > 10e6
    assert rss["minilm"] > rss["echo"]  # the model's weights are in its replica
    cpu = families["tailguard_replica_cpu_seconds"].samples
    assert {s.labels["deployment"] for s in cpu} == {"echo", "minilm"}
    assert all(s.value >= 0 and s.labels["pid"].isdigit() for s in cpu)
    assert max(s.value for s in cpu if s.labels["deployment"] == "minilm") > 0  # it loaded
