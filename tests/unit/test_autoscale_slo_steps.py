"""The ``slo`` policy's step headroom (issue 19): the README's spike trace, simulated.

A step from 100 to 800 req/s reaches the fleet at once, while the replicas it triggers serve
only a cold start later: the policy that sized one replica for 100 req/s kept 86.65 % of the
requests within the objective (P99 6.3 s), where the Kubernetes HPA kept 100 %.
"""

from __future__ import annotations

import pytest

from tailguard.autoscale import BoundsConfig, make_autoscaler
from tailguard.autoscale.policies.slo import SloConfig, recommend
from tailguard.autoscale.sim import SimConfig, simulate
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile
from tailguard.autoscale.traces import generate

README_SPIKE = "spike:base=100,peak=800,at=300,width=60"


def test_readme_spike_trace_stays_within_the_objective() -> None:
    arrivals = generate(README_SPIKE, 600.0, seed=0)
    cfg = SimConfig(duration_s=600.0)  # `tailguard sim`'s defaults
    result = simulate(arrivals, make_autoscaler("slo", BoundsConfig(max_replicas=100)), cfg)
    assert result.slo_attainment >= 0.999, result.to_dict()
    hpa = simulate(arrivals, make_autoscaler("hpa", BoundsConfig(max_replicas=100)), cfg)
    assert result.replica_seconds < hpa.replica_seconds  # headroom, not HPA's over-provision


def _snap(rate: float, queue: int = 0) -> MetricsSnapshot:
    return MetricsSnapshot(window_s=10.0, arrival_rate_rps=rate, ready_replicas=1,
                           queue_depth=queue,
                           service_profile=ServiceProfile(0.020, 0.002, 16))


@pytest.mark.parametrize("rate", [5.0, 100.0, 2000.0])
def test_headroom_is_spare_plus_floor_and_idle_still_scales_to_zero(rate: float) -> None:
    core = recommend(_snap(rate), SloConfig(spare_replicas=0, floor_replicas=1))
    config = SloConfig()
    assert recommend(_snap(rate), config) == max(core + config.spare_replicas,
                                                 config.floor_replicas)
    assert recommend(_snap(0.0), config) == 0  # no demand: scale to zero as before
    assert recommend(_snap(0.0, queue=1), config) == config.floor_replicas


def test_headroom_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="floor_replicas"):
        SloConfig(floor_replicas=0)
    with pytest.raises(ValueError, match="spare_replicas"):
        SloConfig(spare_replicas=-1)
