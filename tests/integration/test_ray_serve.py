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
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
