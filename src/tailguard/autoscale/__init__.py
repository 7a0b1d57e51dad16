"""Autoscaling: typed snapshot, pure policies, queueing model, traces, simulator and the live
controller (:class:`AutoscaleController`, fed by a :class:`LiveRecorder` per deployment)."""

from tailguard.autoscale.controller import AutoscaleController
from tailguard.autoscale.live import LiveRecorder
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
    "AutoscaleController",
    "Autoscaler",
    "AutoscalerState",
    "BoundsConfig",
    "LiveRecorder",
    "MetricsSnapshot",
    "ServiceProfile",
    "make_autoscaler",
]
