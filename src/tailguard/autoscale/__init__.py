"""Autoscaling: typed snapshot, pure policies, queueing model, traces, simulator and the live
controller (:class:`AutoscaleController`, fed by a :class:`LiveRecorder` per deployment).

The names below load on first use (PEP 562): ``tailguard load`` needs only
:mod:`tailguard.autoscale.traces`, and importing the controller (pydantic models) would add
~0.14 s to every load generator's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailguard.lazy import lazy_getattr

if TYPE_CHECKING:
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

__getattr__ = lazy_getattr(__name__, {
    "AutoscaleController": ".controller",
    "LiveRecorder": ".live",
    "POLICY_NAMES": ".policies",
    "Autoscaler": ".policies",
    "AutoscalerState": ".policies",
    "BoundsConfig": ".policies",
    "make_autoscaler": ".policies",
    "MetricsSnapshot": ".snapshot",
    "ServiceProfile": ".snapshot",
})

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

