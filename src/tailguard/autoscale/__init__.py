"""Autoscaling: typed snapshot, pure policies, queueing model, traces and simulator."""

from tailguard.autoscale.policies import (
    POLICY_NAMES,
    Autoscaler,
    AutoscalerState,
    BoundsConfig,
    make_autoscaler,
)
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile

__all__ = [
    "POLICY_NAMES",
    "Autoscaler",
    "AutoscalerState",
    "BoundsConfig",
    "MetricsSnapshot",
    "ServiceProfile",
    "make_autoscaler",
]
