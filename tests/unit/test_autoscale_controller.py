"""The autoscaling controller stepped tick by tick against fake deployments (no processes)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from tailguard.autoscale.controller import AutoscaleController, Decision, controller_for
from tailguard.autoscale.live import LiveRecorder
from tailguard.autoscale.policies.hpa import HpaConfig
from tailguard.autoscale.policies.slo import SloConfig
from tailguard.autoscale.spec import AutoscalingSpec
from tailguard.serve.config import DeploymentSpec

SERVICE_S = 0.040  # one request, one batch of one row: 25 req/s per replica


class FakeDeployment:
    """Replica counts that ``scale_to`` changes at once (new replicas start, then
    :meth:`become_ready`), and a real :class:`LiveRecorder` the test feeds."""

    def __init__(self, name: str = "d", *, p99_ms: float | None = 200.0, replicas: int = 1,
                 **autoscaling: Any) -> None:
        auto = {"min_replicas": 1, "max_replicas": 4, "tick_s": 1.0, "window_s": 10.0,
                **autoscaling}
        if auto.get("policy", "slo") == "slo":
            # These tests step the controller's mechanics against exact replica counts: the
            # slo policy's step headroom (tested in test_autoscale_slo.py) would shift them.
            auto["options"] = {"spare_replicas": 0, "floor_replicas": 1,
                               **auto.get("options", {})}
        self.spec = DeploymentSpec(name=name, model="tailguard.models.sleep:Sleep",
                                   max_batch_size=1, max_wait_ms=0, p99_ms=p99_ms,
                                   autoscaling=AutoscalingSpec(**auto))
        self.recorder = LiveRecorder()
        self.on_cold: Callable[[], None] | None = None
        self.queued_rows = 0
        self.ready = replicas
        self.starting = 0
        self.calls: list[int] = []
        self.fail: Exception | None = None

    def replica_counts(self) -> dict[str, int]:
        if self.fail is not None:
            raise self.fail
        return {"desired": self.ready + self.starting, "ready": self.ready,
                "starting": self.starting, "draining": 0}

    def scale_to(self, replicas: int) -> None:
        self.calls.append(replicas)
        current = self.ready + self.starting
        if replicas > current:
            self.starting += replicas - current
        else:
            drop = current - replicas
            cancel = min(drop, self.starting)
            self.starting -= cancel
            self.ready -= drop - cancel

    def become_ready(self) -> None:
        self.ready += self.starting
        self.starting = 0

    def traffic(self, t0: float, t1: float, rps: float, latency_s: float) -> None:
        """Requests at ``rps`` over [t0, t1), each served as one batch of ``SERVICE_S``."""
        n = int((t1 - t0) * rps)
        for i in range(n):
            t = t0 + i / rps
            self.recorder.arrival(t, 1)
            self.recorder.batch(t + latency_s, 1, SERVICE_S)
            self.recorder.completed(t + latency_s, latency_s, True)


def test_overload_scales_up_at_once_with_a_reason() -> None:
    dep = FakeDeployment()
    ctl = AutoscaleController([dep])
    dep.traffic(0.0, 10.0, rps=75.0, latency_s=0.6)
    dep.queued_rows = 40
    decision = ctl.step("d", 10.0)
    assert decision.current == 1 and decision.target == 4 and decision.applied
    assert dep.calls == [4]
    reason = decision.reason
    assert reason.startswith("scale up 1 -> 4")
    assert "p99 0.600 s > target 0.200 s" in reason
    assert re.search(r"arrival 7[45]\.\d rps", reason), reason
    assert "queue 40 rows" in reason and "slo recommends" in reason
    assert "at max_replicas" in reason
    assert decision.p99_s == pytest.approx(0.6) and decision.queue_depth == 40


def test_steady_load_holds_without_calling_scale_to() -> None:
    dep = FakeDeployment()
    ctl = AutoscaleController([dep])
    dep.traffic(0.0, 10.0, rps=5.0, latency_s=0.045)
    decision = ctl.step("d", 10.0)
    assert decision.target == 1 and not decision.applied
    assert dep.calls == []
    status = ctl.status("d")
    assert status["decisions"] == []  # only changes are logged ...
    assert status["last_decision"]["reason"].startswith("hold 1 -> 1")  # ... the last step is


def test_starting_replicas_are_counted_and_not_asked_for_twice() -> None:
    dep = FakeDeployment()
    ctl = AutoscaleController([dep])
    dep.traffic(0.0, 10.0, rps=75.0, latency_s=0.6)
    ctl.step("d", 10.0)
    assert dep.starting == 3
    second = ctl.step("d", 11.0)  # still starting: nothing new to ask
    assert second.current == 4 and not second.applied
    assert dep.calls == [4]


def test_scale_down_waits_for_the_stabilisation_window_tick_by_tick() -> None:
    """Same traffic to two deployments, stepped each second: the one with a 5 s
    stabilisation window drops below 4 replicas at least 4 s after the other."""
    quick = FakeDeployment("quick", options={"scale_down_stabilization_s": 0.0})
    stable = FakeDeployment("stable", options={"scale_down_stabilization_s": 5.0})
    ctl = AutoscaleController([quick, stable])
    for dep in (quick, stable):
        dep.traffic(0.0, 10.0, rps=75.0, latency_s=0.6)
        dep.traffic(10.0, 40.0, rps=75.0, latency_s=0.05)
        dep.traffic(40.0, 80.0, rps=3.0, latency_s=0.045)  # load drops at t=40
    targets: dict[str, list[tuple[float, int]]] = {"quick": [], "stable": []}
    for second in range(10, 81):
        for name, dep in (("quick", quick), ("stable", stable)):
            targets[name].append((float(second), ctl.step(name, float(second)).target))
            dep.become_ready()

    def first_below_4(name: str) -> float:
        return next(t for t, n in targets[name] if t > 10 and n < 4)

    assert first_below_4("stable") >= first_below_4("quick") + 4.0
    for name in targets:
        after = [n for t, n in targets[name] if t >= 40]
        assert after == sorted(after, reverse=True)  # no flapping on the way down
        assert after[-1] == 1
    assert stable.ready == 1 and quick.ready == 1
    down = ctl.status("stable")["decisions"][0]
    assert down["target"] == 1 and down["reason"].startswith("scale down")
    assert "at min_replicas" in down["reason"]


def test_a_failing_deployment_is_logged_and_counted_and_the_others_still_scale() -> None:
    bad, good = FakeDeployment("bad"), FakeDeployment("good")
    ctl = AutoscaleController([bad, good])
    bad.fail = RuntimeError("metrics exploded")
    good.traffic(0.0, 10.0, rps=75.0, latency_s=0.6)
    ctl.tick(10.0)
    ctl.tick(11.0)
    assert ctl.status("bad")["errors"] == 2
    assert ctl.status("bad")["last_error"] == "RuntimeError: metrics exploded"
    assert good.calls == [4] and ctl.status("good")["errors"] == 0
    bad.fail = None
    ctl.tick(12.0)  # recovers by itself
    assert ctl.status("bad")["last_decision"] is not None


def test_tick_runs_each_deployment_on_its_own_period() -> None:
    fast = FakeDeployment("fast", tick_s=0.5)
    slow = FakeDeployment("slow", tick_s=2.0)
    ctl = AutoscaleController([fast, slow])
    steps: dict[str, int] = {"fast": 0, "slow": 0}
    original = ctl.step

    def counting_step(name: str, now: float) -> Decision:
        steps[name] += 1
        return original(name, now)

    ctl.step = counting_step  # type: ignore[method-assign]
    now = 0.0
    while now <= 4.0 + 1e-9:
        next_due = ctl.tick(now)
        assert next_due > now
        now = next_due
    assert steps == {"fast": 9, "slow": 3}  # at 0, 0.5, ..., 4 and at 0, 2, 4


def test_a_late_tick_does_not_trigger_a_burst_of_catch_up_steps() -> None:
    dep = FakeDeployment(tick_s=1.0)
    ctl = AutoscaleController([dep])
    ctl.tick(0.0)
    assert ctl.tick(10.5) == pytest.approx(11.5)  # the loop stalled 10 s: one step, then on


def test_scale_to_zero_sets_a_cold_start_hook_that_starts_one_replica() -> None:
    dep = FakeDeployment(min_replicas=0, replicas=0)
    ctl = AutoscaleController([dep])
    assert dep.on_cold is not None
    dep.on_cold()
    assert dep.calls == [1] and dep.starting == 1
    dep.on_cold()  # already starting: no second replica
    assert dep.calls == [1]
    decision = ctl.status("d")["decisions"][0]
    assert decision["target"] == 1 and "cold start" in decision["reason"]


def test_without_scale_to_zero_no_hook_is_set() -> None:
    dep = FakeDeployment(min_replicas=1)
    AutoscaleController([dep])
    assert dep.on_cold is None


def test_idle_deployment_scales_to_zero_after_the_grace_period() -> None:
    dep = FakeDeployment(min_replicas=0, options={"scale_to_zero_grace_s": 5.0,
                                                  "scale_down_stabilization_s": 0.0})
    ctl = AutoscaleController([dep])
    dep.traffic(0.0, 2.0, rps=5.0, latency_s=0.045)
    assert ctl.step("d", 2.0).target == 1
    assert ctl.step("d", 10.5).target == 1  # the 10 s window still shows the requests
    assert ctl.step("d", 14.0).target == 1  # idle, but demand was seen 3.5 s ago ...
    assert ctl.step("d", 16.0).target == 0  # ... idle past the 5 s grace period: zero
    assert dep.calls[-1] == 0 and dep.ready == 0


def test_status_is_json_ready_with_state_metrics_and_newest_decision_first() -> None:
    dep = FakeDeployment()
    ctl = AutoscaleController([dep], wall_clock=lambda: 1_700_000_000.0)
    dep.traffic(0.0, 10.0, rps=40.0, latency_s=0.3)
    ctl.step("d", 10.0)
    dep.become_ready()
    dep.traffic(10.0, 20.0, rps=75.0, latency_s=0.6)
    ctl.step("d", 20.0)
    status = ctl.status("d")
    orjson.dumps(status)  # the gateway serialises it as is
    assert status["policy"] == "slo" and status["max_replicas"] == 4
    assert status["state"]["policy"]["kind"] == "slo"
    assert status["metrics"]["arrival_rps"] == pytest.approx(75.0, rel=0.02)
    assert status["metrics"]["service_profile"]["max_batch_size"] == 1
    ats = [d["at_s"] for d in status["decisions"]]
    assert ats == sorted(ats, reverse=True) and status["decisions"][0]["wall_time"] == 1.7e9


def test_decision_log_keeps_the_last_history_changes() -> None:
    dep = FakeDeployment(history=2, options={"scale_down_stabilization_s": 0.0})
    ctl = AutoscaleController([dep])
    t = 0.0
    for rps in (75.0, 3.0, 75.0, 3.0):
        dep.traffic(t, t + 10.0, rps=rps, latency_s=0.6 if rps > 10 else 0.045)
        t += 10.0
        ctl.step("d", t)
        dep.become_ready()
    decisions = ctl.status("d")["decisions"]
    assert [(d["current"], d["target"]) for d in decisions] == [(4, 1), (1, 4)]


def test_controller_for_picks_only_autoscaled_deployments() -> None:
    auto = FakeDeployment("auto")
    fixed = FakeDeployment("fixed")
    fixed.spec = fixed.spec.model_copy(update={"autoscaling": None})
    ctl = controller_for({"auto": auto, "fixed": fixed})
    assert ctl.names == ["auto"] and "fixed" not in ctl
    with pytest.raises(ValueError, match="no autoscaling"):
        ctl.add(fixed)
    with pytest.raises(ValueError, match="already"):
        ctl.add(auto)


def test_the_loop_steps_on_its_own_and_survives_errors() -> None:
    async def scenario() -> None:
        dep = FakeDeployment(tick_s=0.02)
        ctl = AutoscaleController([dep])
        now = asyncio.get_running_loop().time()
        dep.traffic(now - 5.0, now, rps=75.0, latency_s=0.6)
        dep.fail = RuntimeError("first ticks fail")
        ctl.start()
        assert ctl.running
        deadline = time.monotonic() + 10.0
        while ctl.status("d")["errors"] < 2:
            assert time.monotonic() < deadline, "the loop did not tick"
            await asyncio.sleep(0.01)
        dep.fail = None
        while dep.calls != [4]:
            assert time.monotonic() < deadline, "the loop did not scale after the errors"
            await asyncio.sleep(0.01)
        assert ctl.running
        await ctl.stop()
        assert not ctl.running
        calls = len(dep.calls)
        await asyncio.sleep(0.1)
        assert len(dep.calls) == calls

    asyncio.run(scenario())


def test_start_without_deployments_starts_nothing() -> None:
    async def scenario() -> None:
        ctl = AutoscaleController([])
        ctl.start()
        assert not ctl.running
        await ctl.stop()

    asyncio.run(scenario())


# ----------------------------------------------------------------- the spec
def test_slo_objective_defaults_to_the_deployment_p99_and_options_override_it() -> None:
    spec = AutoscalingSpec(policy="slo")
    config = spec.autoscaler(p99_ms=150.0).config
    assert isinstance(config, SloConfig) and config.slo_p99_s == pytest.approx(0.150)
    spec = AutoscalingSpec(policy="slo", options={"slo_p99_s": 0.5})
    config = spec.autoscaler(p99_ms=150.0).config
    assert isinstance(config, SloConfig) and config.slo_p99_s == 0.5


def test_bounds_options_go_to_the_bounds_and_policy_options_to_the_policy() -> None:
    spec = AutoscalingSpec(policy="hpa", min_replicas=2, max_replicas=9,
                           options={"scale_up_cooldown_s": 7.0, "target_utilization": 0.5})
    scaler = spec.autoscaler(p99_ms=100.0)
    assert scaler.bounds.scale_up_cooldown_s == 7.0
    assert (scaler.bounds.min_replicas, scaler.bounds.max_replicas) == (2, 9)
    assert isinstance(scaler.config, HpaConfig) and scaler.config.target_utilization == 0.5


@pytest.mark.parametrize(("options", "match"), [
    ({"bogus": 1}, "unknown slo option.*bounds options are"),
    ({"rate_headroom": -1.0}, "rate_headroom"),
    ({"scale_up_cooldown_s": -1.0}, "scale_up_cooldown_s"),
])
def test_bad_options_fail_when_the_config_is_loaded(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        DeploymentSpec(name="d", model="tailguard.models.sleep:Sleep",
                       autoscaling={"options": options})


# ------------------------------------------- with a real Deployment (in-process replicas)
def _real_deployment(**autoscaling: Any) -> Any:
    import numpy as np

    from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics
    from tailguard.serve.deployment import Deployment
    from tailguard.serve.loader import instantiate, signature
    from tests.unit.fake_replicas import FakeBackend

    spec = DeploymentSpec.model_validate({
        "name": "sleep", "model": "tailguard.models.sleep:Sleep", "max_batch_size": 4,
        "max_wait_ms": 0, "options": {"sleep_ms": 0}, "replicas": 0, "p99_ms": 100,
        "autoscaling": {"min_replicas": 0, "max_replicas": 2, **autoscaling}})
    dep = Deployment(spec, signature(instantiate(spec)), FakeBackend(delay_s=0.005),
                     DeploymentMetrics(ServeMetrics(), spec.name))
    rows = {"x": np.array([[7.0]], dtype=np.float32)}
    return dep, rows


def test_real_deployment_cold_starts_from_zero_and_goes_back_to_zero_when_idle() -> None:
    async def scenario() -> None:
        dep, rows = _real_deployment(options={"scale_to_zero_grace_s": 1.0,
                                              "scale_down_stabilization_s": 0.0,
                                              "spare_replicas": 0, "floor_replicas": 1})
        ctl = AutoscaleController([dep])
        await dep.start()
        assert dep.replica_counts()["desired"] == 0 and dep.on_cold is not None
        out = await dep.infer(rows, 1, ((1,),))  # waits for the cold start it triggered
        assert out["y"].item() == 7.0
        loop = asyncio.get_running_loop()
        now = loop.time()
        decision = ctl.step("sleep", now)
        assert decision.target == 1 and not decision.applied
        orjson.dumps(ctl.status("sleep"))  # plain floats only: the gateway serialises it
        snap = ctl.status("sleep")["metrics"]
        assert snap["completed"] == 1 and snap["arrival_rps"] > 0
        assert ctl.status("sleep")["decisions"][0]["reason"].startswith("cold start")
        # The request stays in the 10 s window (demand), then the 1 s grace period passes.
        assert ctl.step("sleep", now + 5.0).target == 1
        assert ctl.step("sleep", now + 12.0).target == 0
        deadline = loop.time() + 5.0
        while dep.replica_counts() != {"desired": 0, "ready": 0, "starting": 0, "draining": 0}:
            assert loop.time() < deadline, dep.replica_counts()
            await asyncio.sleep(0.005)
        out = await dep.infer(rows, 1, ((1,),))  # and cold-starts again
        assert out["y"].item() == 7.0
        await dep.stop(1.0)

    asyncio.run(scenario())


def test_gateway_lists_replica_counts_and_autoscaling_status() -> None:
    from starlette.testclient import TestClient

    from tailguard.serve.app import Gateway
    from tailguard.serve.config import ServeConfig
    from tests.unit.fake_replicas import FakeBackend

    config = ServeConfig.model_validate({"deployments": [
        {"name": "auto", "model": "tailguard.models.sleep:Sleep", "options": {"sleep_ms": 0},
         "autoscaling": {"min_replicas": 1, "max_replicas": 3, "tick_s": 0.05}},
        {"name": "fixed", "model": "tailguard.models.sleep:Sleep", "options": {"sleep_ms": 0}},
    ]})
    gateway = Gateway(config, backend=FakeBackend())
    with TestClient(gateway) as client:
        deadline = time.monotonic() + 10.0
        while True:
            body = client.get("/v1/deployments").json()
            auto = next(d for d in body["deployments"] if d["name"] == "auto")
            if auto["autoscaling"]["last_decision"] is not None:
                break
            assert time.monotonic() < deadline, "the controller never stepped"
            time.sleep(0.02)
        fixed = next(d for d in body["deployments"] if d["name"] == "fixed")
        assert set(auto["replica_counts"]) == {"desired", "ready", "starting", "draining"}
        assert auto["autoscaling"]["policy"] == "slo" and auto["autoscaling"]["running"]
        assert auto["autoscaling"]["last_decision"]["target"] == 1
        assert fixed["autoscaling"] is None
    assert not gateway.autoscaler.running  # stopped with the app


# ----------------------------------------------------------------- tailguard status
def test_status_command_prints_replicas_and_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from tailguard.commands import status as status_command

    dep = FakeDeployment()
    ctl = AutoscaleController([dep], wall_clock=lambda: 1_700_000_000.0)
    dep.traffic(0.0, 10.0, rps=75.0, latency_s=0.6)
    ctl.step("d", 10.0)
    payload = orjson.loads(orjson.dumps({"deployments": [{
        "name": "d", "ready": True, "queued_rows": 3,
        "replica_counts": dep.replica_counts(), "autoscaling": ctl.status("d")}]}))
    seen: dict[str, Any] = {}

    def fake_fetch(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> Any:
        seen.update(url=url, api_key=api_key)
        return payload

    monkeypatch.setattr(status_command, "fetch_deployments", fake_fetch)
    monkeypatch.setenv("COLUMNS", "400")
    app = typer.Typer()
    status_command.register(app)
    app.command("noop")(lambda: None)  # two commands: "status" is a subcommand
    result = CliRunner().invoke(app, ["status", "http://gw:9", "--api-key", "k1"])
    assert result.exit_code == 0, result.output
    assert seen == {"url": "http://gw:9", "api_key": "k1"}
    assert "scale up 1 -> 4" in result.output and "1/3/0" in result.output
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0 and orjson.loads(result.output) == payload


def test_status_command_says_why_it_cannot_reach_the_gateway() -> None:
    import typer
    from typer.testing import CliRunner

    from tailguard.commands import status as status_command

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = typer.Typer()
    status_command.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["status", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1 and "cannot reach" in result.output
