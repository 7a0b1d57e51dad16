"""Serving through Ray replicas on a real multi-node Ray cluster (issue 13).

The gateway is one ``tailguard serve`` process; ``backend: ray`` puts its replicas on the
cluster's worker nodes as actors. The same clients work (tritonclient, openai), a node
SIGKILLed under load costs no request, and the fleet is whole again on the nodes left.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from tailguard.load import LoadResult, LoadSpec, run_load
from tests.integration.conftest import ServerProcess, wait_for

pytest.importorskip("ray")


def _ray(cluster: Any, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"backend": "ray", "ray_address": cluster.address, "deployments": deployments}


def _nodes(server: ServerProcess, name: str) -> list[str]:
    return [r["node"] for r in server.deployment(name)["replicas"] if r["state"] == "ready"]


def test_tritonclient_and_openai_through_ray_replicas_on_two_nodes(
        ray_cluster, start_server) -> None:  # type: ignore[no-untyped-def]
    import tritonclient.http as triton
    from openai import OpenAI

    server: ServerProcess = start_server(_ray(ray_cluster, [
        {"name": "echo", "model": "tailguard.models.echo:Echo", "replicas": 2,
         "max_wait_ms": 0},
        {"name": "minilm", "model": "tailguard.models.minilm:MiniLM", "replicas": 1,
         "options": {"threads": 1}},
    ])).wait_ready(180)
    wait_for(lambda: len(_nodes(server, "echo")) == 2, 60, "both echo replicas ready")
    worker_nodes = {n.node_id for n in ray_cluster.workers}
    echo_nodes = _nodes(server, "echo")
    assert len(set(echo_nodes)) == 2 and set(echo_nodes) <= worker_nodes, echo_nodes

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inp = triton.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    out = client.infer("echo", [inp], outputs=[
        triton.InferRequestedOutput("OUTPUT0", binary_data=False)])
    np.testing.assert_array_equal(out.as_numpy("OUTPUT0"), x)
    client.close()

    oai = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    emb = oai.embeddings.create(model="minilm", input=["a replica on another node", "hi"])
    vectors = np.array([d.embedding for d in emb.data])
    oai.close()
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _body() -> bytes:
    import json

    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                   "data": [1.0, 2.0]}]}).encode()


def test_a_node_killed_under_load_loses_no_request_and_the_fleet_heals(
        ray_cluster, start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_ray(ray_cluster, [
        {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 2,
         "max_batch_size": 8, "max_wait_ms": 1, "options": {"sleep_ms": 20}},
    ])).wait_ready(120)
    # ready means one replica serves; the test needs both, one per node
    wait_for(lambda: len(_nodes(server, "sleep")) == 2, 60, "both replicas ready")
    before = _nodes(server, "sleep")
    assert len(set(before)) == 2, before
    spec = LoadSpec(server.url, model="sleep", concurrency=8, duration_s=6.0,
                    bodies=(_body(),), seed=3)
    results: list[LoadResult] = []
    load = threading.Thread(target=lambda: results.append(run_load(spec)))
    load.start()
    time.sleep(1.5)  # load running: the kill lands on batches in flight
    victim = before[0]
    killed_at = time.monotonic()
    ray_cluster.replace_node(victim)
    wait_for(lambda: server.deployment("sleep")["replica_counts"]["ready"] == 2
             and victim not in _nodes(server, "sleep"), 60, "two ready replicas off the dead node")
    healed_s = time.monotonic() - killed_at
    load.join(30)
    (result,) = results
    assert result.errors == {}, result.errors  # every request answered 200
    assert result.ok > 100, result
    assert healed_s < 30, healed_s
    # readiness told the truth meanwhile: the deployment stayed ready on the survivor
    assert server.get("/v2/health/ready").status_code == 200


def test_the_autoscaler_scales_ray_replicas_across_nodes_and_back(
        ray_cluster, start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_ray(ray_cluster, [
        {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 1,
         "max_batch_size": 1, "max_wait_ms": 0, "options": {"sleep_ms": 50},
         "autoscaling": {"policy": "concurrency", "min_replicas": 1, "max_replicas": 3,
                         "tick_s": 0.25, "window_s": 1.0, "recent_window_s": 0.5,
                         "options": {"target_ongoing_requests": 1.0, "upscale_delay_s": 0.5,
                                     "downscale_delay_s": 1.0, "look_back_period_s": 1.0}}},
    ])).wait_ready(120)
    spec = LoadSpec(server.url, model="sleep", concurrency=6, duration_s=1.0,
                    bodies=(_body(),), seed=4)
    results: list[LoadResult] = []
    stop = threading.Event()

    def drive() -> None:  # short closed-loop segments until told to stop
        while not stop.is_set():
            results.append(run_load(spec))

    load = threading.Thread(target=drive)
    load.start()
    try:
        wait_for(lambda: server.deployment("sleep")["replica_counts"]["ready"] == 3, 60,
                 "three ready replicas under load")
        assert len(set(_nodes(server, "sleep"))) == 2, _nodes(server, "sleep")
    finally:
        stop.set()
        load.join(30)
    assert all(r.errors == {} for r in results), [r.errors for r in results]
    wait_for(lambda: server.deployment("sleep")["replica_counts"]["desired"] == 1, 60,
             "back to one replica once idle")
