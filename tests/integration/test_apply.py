"""``tailguard apply`` and SIGHUP against a running server: live, idempotent, all-or-nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailguard.load import LoadResult, LoadSpec, Tenant, TenantMix, run_load
from tests.integration.conftest import ServerProcess, wait_for

pytestmark = pytest.mark.timeout(300)

ADMIN = "k-admin"
ECHO = "tailguard.models.echo:Echo"
ECHO_AGAIN = "tests.support.models:EchoAgain"
SLEEP = "tailguard.models.sleep:Sleep"


def config(*, echo_model: str = ECHO, with_gone: bool = True, with_side: bool = True
           ) -> dict[str, Any]:
    tenants = [{"id": "keep", "api_keys": ["k-keep"]}]
    if with_gone:
        tenants.append({"id": "gone", "api_keys": ["k-gone"]})
    deployments = [{"name": "echo", "model": echo_model, "replicas": 2, "max_wait_ms": 0,
                    "timeout_ms": 60_000}]
    if with_side:
        deployments.append({"name": "side", "model": SLEEP, "options": {"sleep_ms": 1}})
    return {"admin_api_keys": [ADMIN], "tenants": tenants, "deployments": deployments}


def apply(server: ServerProcess, cfg: dict[str, Any], path: Path, *extra: str
          ) -> subprocess.CompletedProcess[str]:
    """Run ``tailguard apply`` as a user would (the file leaves out the port: the server
    keeps its own)."""
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, "-m", "tailguard", "apply", str(path), "--server", server.url,
         "--admin-key", ADMIN, *extra],
        capture_output=True, text=True, timeout=240)


def apply_here(server: ServerProcess, cfg: dict[str, Any], path: Path, *extra: str
               ) -> subprocess.CompletedProcess[str]:
    """The same command run in this process (no interpreter start-up per call)."""
    from typer.testing import CliRunner

    from tailguard.cli import app

    path.write_text(yaml.safe_dump(cfg))
    done = CliRunner().invoke(app, ["apply", str(path), "--server", server.url,
                                    "--admin-key", ADMIN, *extra])
    return subprocess.CompletedProcess([], done.exit_code, done.stdout, done.stderr)


def served(server: ServerProcess, tenant: str) -> int:
    answer = server.get("/v1/usage", headers={"Authorization": f"Bearer {ADMIN}"})
    return sum(int(row["requests"]) for row in answer.json()["usage"]
               if row["tenant"] == tenant)


def running_config(server: ServerProcess) -> dict[str, Any]:
    answer = server.get("/v1/config", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["config"])


def echo_pids(server: ServerProcess) -> set[int]:
    answer = server.get("/v1/deployments", headers={"Authorization": f"Bearer {ADMIN}"})
    (echo,) = [d for d in answer.json()["deployments"] if d["name"] == "echo"]
    return {r["pid"] for r in echo["replicas"] if r["state"] == "ready"}


def status_of(server: ServerProcess, key: str, model: str = "echo") -> int:
    return server.post(f"/v2/models/{model}/infer", headers={"Authorization": f"Bearer {key}"},
                       json={"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2],
                                         "data": [0.5, 0.5]}]}).status_code


def test_apply_under_load_changes_model_removes_tenant_then_is_a_no_op(
        start_server: Any, tmp_path: Path) -> None:
    server = start_server(config()).wait_ready()
    before = echo_pids(server)
    mix = TenantMix((Tenant("keep", "k-keep", 3.0), Tenant("gone", "k-gone", 1.0)))
    results: list[LoadResult] = []
    applied = threading.Event()

    def send() -> None:
        # 3 s segments until the apply (and its check that it was a no-op) is done: the load
        # covers the whole reconcile however long the roll takes on a loaded machine.
        seed = 0
        while not applied.is_set() or seed < 2:
            seed += 1
            results.append(run_load(LoadSpec(
                server.url, model="echo", rate_rps=60, duration_s=3, timeout_s=60,
                tenants=mix, api_key="k-keep", max_connections=32, seed=seed)))

    load = threading.Thread(target=send)
    load.start()
    try:
        # The tenant to remove has been served before it goes.
        wait_for(lambda: served(server, "gone") >= 5, 30, "load from tenant gone")
        wanted = config(echo_model=ECHO_AGAIN, with_gone=False, with_side=False)
        done = apply(server, wanted, tmp_path / "wanted.yaml")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "~ deployment echo  (rolling restart)" in done.stdout
        assert "- deployment side  (drain" in done.stdout
        assert "- tenant gone" in done.stdout and "applied" in done.stdout
        # Once apply answers, the removed tenant's key is refused and the model swapped.
        assert status_of(server, "k-gone") == 401
        assert status_of(server, "k-keep") == 200
        assert status_of(server, "k-keep", "side") == 404
        after = echo_pids(server)
        assert len(after) == 2 and not after & before
        again = apply(server, wanted, tmp_path / "wanted.yaml")
        assert again.returncode == 0 and again.stdout.strip() == "no changes", again.stdout
    finally:
        applied.set()
        load.join()
    keep = [r.tenants["keep"] for r in results]
    gone = [r.tenants["gone"] for r in results if "gone" in r.tenants]
    assert sum(k.requests for k in keep) > 100  # traffic really flowed through the apply (a loaded machine sends fewer)
    assert all(k.ok == k.requests for k in keep), [k.errors for k in keep]  # nothing failed
    assert all(set(g.errors) <= {"http_401"} for g in gone), [g.errors for g in gone]
    assert gone[0].ok > 0 and gone[-1].errors  # served before, refused after: only 401s
    shown = running_config(server)
    assert shown["deployments"][0]["model"] == ECHO_AGAIN
    assert [t["id"] for t in shown["tenants"]] == ["keep"]
    assert shown["tenants"][0]["api_keys"][0].startswith("sha256:")
    assert "k-keep" not in str(shown) and ADMIN not in str(shown)


def test_dry_run_invalid_and_restart_needing_applies_change_nothing(
        start_server: Any, tmp_path: Path) -> None:
    server = start_server(config()).wait_ready()
    shown = running_config(server)
    wanted = config(with_gone=False)
    wanted["deployments"][0]["max_wait_ms"] = 3
    done = apply_here(server, wanted, tmp_path / "dry.yaml", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "~ deployment echo", "    max_wait_ms: 0.0 -> 3.0",
        "- tenant gone  (its keys stop working at once)"]
    typo = config(with_gone=False)
    typo["deployments"][0]["max_wait_msec"] = 3
    done = apply_here(server, typo, tmp_path / "typo.yaml")
    assert done.returncode == 2
    assert "deployments[echo].max_wait_msec: Extra inputs are not permitted" in done.stderr
    bad_model = config(echo_model="tailguard.models.nowhere:Nothing", with_gone=False)
    done = apply_here(server, bad_model, tmp_path / "bad.yaml")  # valid YAML; the server refuses
    assert done.returncode == 2 and "deployments[echo]: cannot load its model" in done.stderr
    moved = {**config(with_gone=False), "port": server.port + 1}
    done = apply_here(server, moved, tmp_path / "port.yaml")
    assert done.returncode == 2 and "port cannot change on a running server" in done.stderr
    assert running_config(server) == shown
    assert status_of(server, "k-gone") == 200


def test_sighup_reloads_the_config_file(start_server: Any) -> None:
    server = start_server(config()).wait_ready()
    on_disk = yaml.safe_load(server.config_path.read_text())
    on_disk["tenants"] = [t for t in on_disk["tenants"] if t["id"] != "gone"]
    on_disk["deployments"][1]["max_batch_size"] = 4
    server.config_path.write_text(yaml.safe_dump(on_disk))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: status_of(server, "k-gone") == 401, 30, "the reloaded tenants")
    assert running_config(server)["deployments"][1]["max_batch_size"] == 4
    server.config_path.write_text("deployments: [{name: echo, modle: x}]\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "not applied, nothing changed" in server.log(), 30, "the refusal logged")
    assert "deployments[echo].modle" in server.log()
    assert status_of(server, "k-keep") == 200 and server.proc.poll() is None
