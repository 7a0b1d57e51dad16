"""Utilisation as a scaling signal: the NVML probe (present, absent, other processes'), the
slo policy's scale-down guard, the HPA on GPU utilisation, and the /metrics gauges."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tailguard.autoscale.policies.hpa import HpaConfig, HpaMetric, HpaState
from tailguard.autoscale.policies.hpa import decide as hpa_decide
from tailguard.autoscale.policies.slo import SloConfig, SloState, busy_floor
from tailguard.autoscale.policies.slo import decide as slo_decide
from tailguard.autoscale.sim import SimConfig, simulate
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile
from tailguard.autoscale.traces import poisson
from tailguard.observe.gpu import GpuProbe
from tailguard.serve.app import Gateway
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tests.unit.fake_replicas import FakeBackend


class FakeNvml:
    """Two devices: device 0 runs pid 100 at 70 %, 4 of 16 GB; device 1 runs pid 200."""

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.procs = {0: [100], 1: [200]}
        self.util = {0: 70, 1: 10}

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=p) for p in self.procs[h]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        raise RuntimeError("not supported")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self.util[h], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=4 << 30, total=16 << 30)


def test_gpu_probe_reads_only_the_devices_the_replicas_run_on() -> None:
    probe = GpuProbe(FakeNvml())
    sample = probe.sample([100, 999])
    assert sample is not None and sample.devices == 1
    assert sample.utilization == pytest.approx(0.70)
    assert sample.memory_fraction == pytest.approx(0.25)
    assert probe.sample([999]) is None  # a CPU deployment on a GPU machine: no signal
    assert probe.sample([]) is None
    every = probe.sample(None)
    assert every is not None and every.utilization == pytest.approx(0.40)


def test_gpu_probe_without_nvml_is_a_missing_signal_not_an_error() -> None:
    probe = GpuProbe(FakeNvml(fail_init=True))
    assert not probe.available
    assert probe.sample([100]) is None
    # The real module on this machine: absent library or no GPU gives None, never raises.
    GpuProbe().sample([1])


def _snap(ready: int, busy: float, rate: float, **kw: Any) -> MetricsSnapshot:
    return MetricsSnapshot(window_s=10.0, arrival_rate_rps=rate, ready_replicas=ready,
                           busy_ratio=busy, arrival_cv=1.0,
                           service_profile=ServiceProfile(fixed_s=0.1, per_row_s=0.0,
                                                          max_batch_size=1), **kw)


def test_slo_keeps_replicas_the_measured_work_needs() -> None:
    config = SloConfig(slo_p99_s=2.0, scale_down_stabilization_s=0.0, scale_down_busy_max=0.8)
    # The profile says 0.1 s per request: 3 rps needs one replica. But the replicas are 70 %
    # busy (the real mix is slower than the profile): 2.8 replicas of work, 4 at <= 0.8.
    snap = _snap(4, 0.7, 3.0, busy_replicas=2.8)
    target, _ = slo_decide(snap, SloState(), config, now=100.0)
    assert target == 4
    # The same snapshot without the guard's evidence of load scales down to the model's size.
    idle = _snap(4, 0.05, 3.0, busy_replicas=0.2)
    target, _ = slo_decide(idle, SloState(), config, now=100.0)
    assert target < 4
    # GPU utilisation is evidence too, when there is a signal.
    gpu = _snap(4, 0.05, 3.0, busy_replicas=0.2, gpu_utilization=0.9)
    target, _ = slo_decide(gpu, SloState(), config, now=100.0)
    assert target == 4


@given(ready=st.integers(0, 50), busy=st.floats(0, 1), rate=st.floats(0, 500),
       cap=st.floats(0.1, 1))
def test_the_guard_never_adds_replicas_and_never_leaves_the_rest_above_target(
        ready: int, busy: float, rate: float, cap: float) -> None:
    config = SloConfig(slo_p99_s=2.0, scale_down_stabilization_s=0.0, scale_down_busy_max=cap)
    snap = _snap(ready, busy, rate)
    target, _ = slo_decide(snap, SloState(), config, now=50.0)
    unguarded, _ = slo_decide(snap, SloState(), replace(config, scale_down_busy_max=1.0),
                              now=50.0)
    if unguarded >= ready:  # not a scale-down: the guard is not involved
        assert target == unguarded
    else:
        assert unguarded <= target <= ready
        if target < ready:  # a replica was removed: the rest carry the work within the cap
            assert busy * ready <= cap * target + 1e-6
    assert busy_floor(snap, config) >= 0


def test_hpa_scales_on_gpu_utilisation_and_holds_without_the_signal() -> None:
    config = HpaConfig(metric=HpaMetric.GPU, target_utilization=0.5, sync_period_s=0.0)
    hot = _snap(2, 0.1, 1.0, gpu_utilization=0.9)
    assert hpa_decide(hot, HpaState(), config, now=0.0)[0] == 4  # ceil(2 * 0.9 / 0.5)
    blind = _snap(2, 0.9, 100.0)  # busy and loaded, but the metric it scales on is missing
    assert hpa_decide(blind, HpaState(), config, now=0.0)[0] == 2
    assert HpaConfig(metric="gpu_utilization").metric is HpaMetric.GPU


def test_simulated_snapshots_carry_work_and_cold_start() -> None:
    seen: list[MetricsSnapshot] = []

    class Spy:
        name = "spy"

        def initial_state(self) -> None:
            return None

        def decide(self, snap: MetricsSnapshot, state: None, now: float) -> tuple[int, None]:
            seen.append(snap)
            return snap.current_replicas, None

    arrivals = poisson(20.0, 30.0, np.random.default_rng(1))
    cfg = SimConfig(duration_s=30.0, profile=ServiceProfile(fixed_s=0.025, per_row_s=0.0,
                                                            max_batch_size=1),
                    cold_start_s=1.4, initial_replicas=2)
    simulate(arrivals, Spy(), cfg)  # type: ignore[arg-type]
    last = seen[-1]
    assert last.cold_start_s == 1.4
    assert last.busy_replicas == pytest.approx(20 * 0.025, rel=0.35)


def test_metrics_show_the_busy_fraction_gauge() -> None:
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0)
    gateway = Gateway(ServeConfig(deployments=[spec]), backend=FakeBackend())
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2],
                        "data": [1, 2]}]}
    with TestClient(gateway) as client:
        assert client.post("/v2/models/echo/infer", json=body).status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    busy = families["tailguard_replica_busy_fraction"].samples
    assert [s.labels for s in busy] == [{"deployment": "echo"}]
    assert 0.0 <= busy[0].value <= 1.0
    assert "tailguard_gpu_utilization" not in families  # no GPU signal: absent, not zero
