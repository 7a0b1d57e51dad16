"""The gateway's door: tenants and the caller's identity, quotas and hold-offs, admission.

``decide`` (pure) chooses; ``TenantGate`` authenticates, keeps the quotas and writes each
decision back.
"""

from typing import TYPE_CHECKING

from tailguard.lazy import lazy_getattr

if TYPE_CHECKING:
    from tailguard.serve.gate.decide import AdmissionRequest, Decision, RejectReason, decide
    from tailguard.serve.gate.gate import TenantGate
    from tailguard.serve.gate.identity import Caller, Principal
    from tailguard.serve.gate.policy import AdmissionSettings
    from tailguard.serve.gate.tenants import Priority, TenantSpec

__all__ = ["AdmissionRequest", "AdmissionSettings", "Caller", "Decision", "Principal",
           "Priority", "RejectReason", "TenantGate", "TenantSpec", "decide"]
__getattr__ = lazy_getattr(__name__, {
    "AdmissionRequest": ".decide", "Decision": ".decide", "RejectReason": ".decide",
    "decide": ".decide", "TenantGate": ".gate", "Caller": ".identity",
    "Principal": ".identity", "AdmissionSettings": ".policy", "Priority": ".tenants",
    "TenantSpec": ".tenants",
})
