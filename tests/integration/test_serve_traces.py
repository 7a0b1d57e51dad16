"""Traces across real processes: a ``tailguard serve`` gateway and its replica process each
export their own spans (here to one JSON-lines file); the replica's ``predict`` span is the
child of the gateway's batch span through the traceparent in the batch message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.conftest import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_predict_in_the_replica_process_is_the_child_of_the_batch_span(
        start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "spans.jsonl"
    server = start_server({
        "deployments": [{"name": "echo", "model": "tailguard.models.echo:Echo",
                         "max_wait_ms": 0}],
        "tracing": {"enabled": True, "sample_ratio": 0.0, "exporter": "jsonl",
                    "jsonl_path": str(path)},
    }).wait_ready()
    resp = server.post("/v2/models/echo/infer", json=BODY,
                       headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert resp.status_code == 200
    assert server.post("/v2/models/echo/infer", json=BODY).status_code == 200  # ratio 0: none
    wait_for(lambda: any(s["name"] == "predict" for s in _spans(path)), 30,
             "the replica's predict span in the file")
    spans = _spans(path)
    (request,) = [s for s in spans if s["name"] == "v2 infer"]
    (batch,) = [s for s in spans if s["name"] == "batch"]
    (predict,) = [s for s in spans if s["name"] == "predict"]
    assert request["context"]["trace_id"] == f"0x{TRACE_ID}"  # the client's trace
    assert [link["context"]["span_id"] for link in batch["links"]] == [
        request["context"]["span_id"]]
    assert batch["parent_id"] is None
    assert predict["context"]["trace_id"] == batch["context"]["trace_id"]
    assert predict["parent_id"] == batch["context"]["span_id"]
    # two processes, each exporting its own spans
    assert batch["resource"]["attributes"]["service.name"] == "tailguard-gateway"
    replica = predict["resource"]["attributes"]
    assert replica["service.name"] == "tailguard-replica"
    assert replica["tailguard.replica"] == "echo-0"
    assert predict["attributes"]["tailguard.rows"] == 1
    assert batch["attributes"]["tailguard.replica"] == "echo-0"


def test_a_ray_replica_exports_its_predict_span_under_the_batch_span(
        ray_cluster, start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    pytest.importorskip("ray")
    path = tmp_path / "spans.jsonl"  # the test cluster's nodes share this machine's disk
    server = start_server({
        "backend": "ray", "ray_address": ray_cluster.address,
        "deployments": [{"name": "echo", "model": "tailguard.models.echo:Echo",
                         "max_wait_ms": 0}],
        "tracing": {"enabled": True, "exporter": "jsonl", "jsonl_path": str(path)},
    }).wait_ready(180)
    assert server.post("/v2/models/echo/infer", json=BODY).status_code == 200
    wait_for(lambda: any(s["name"] == "predict" for s in _spans(path)), 30,
             "the Ray replica's predict span in the file")
    spans = _spans(path)
    (batch,) = [s for s in spans if s["name"] == "batch"]
    (predict,) = [s for s in spans if s["name"] == "predict"]
    assert predict["parent_id"] == batch["context"]["span_id"]
    assert predict["context"]["trace_id"] == batch["context"]["trace_id"]
    assert predict["resource"]["attributes"]["tailguard.replica"] == "echo-0"
