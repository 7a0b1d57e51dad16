"""Admit or refuse one request: a pure function of the request, the load and the caller's hold.

The gate asks the deployment for one :class:`~tailguard.serve.deployment.view.LoadView`,
calls :func:`decide` and stores back what the :class:`Decision` hands it (bucket, hold-off,
a probe)::

    view = deployment.load_view(caller, rows, now)
    request = AdmissionRequest(Priority.STANDARD, deadline_s=now + 0.05, rows=1,
                               bucket=bucket, inflight=3, max_concurrency=64)
    decision = decide(request, view, hold, settings, now)
    bucket, hold = decision.bucket, decision.hold
    if decision.counts_demand:
        deployment.note_demand(caller, rows, now)

Checks, in order (nothing is consumed by a refused request):

1. deadline already passed -> 504 ``deadline``;
2. token bucket empty -> 429 ``rate_limited`` (Retry-After: when the next token arrives);
3. at ``max_concurrency`` requests in flight -> 429 ``concurrency``;
4. no batch measured (nor probe admitted) for :data:`PROBE_AFTER_S`, an idle replica and
   nothing ahead ->
   admitted as a probe: it delays no one, and its batch corrects a service model that
   predicts a miss for everything (and would otherwise shed everything, forever);
5. held off -> 429 ``shed`` at once: the caller was over its fair share and shed, and that
   request's predicted overshoot has not passed yet (:class:`~.quotas.Hold`);
6. deadline feasibility -> 429 ``shed``: the request would finish after ``now + fraction *
   (deadline - now)``; the fraction is per class (:class:`~.policy.AdmissionSettings`), the
   whole budget for a caller within its fair share. The finish is predicted batch by batch
   on the replicas as they free (:func:`~.finish.estimate_finish_batched`); a caller over its
   share has only its part of each batch, since the lighter callers' later arrivals go ahead
   of its rows. With nothing measured (cold) or no ready replica, nothing is shed:
   availability is the gateway's 503, not admission's business.

At light load the gate first asks :func:`surely_admitted`, with a bound on the finish that
costs nothing to compute (``Deployment.finish_bound_s``): it admits only what ``decide``
would, without building the view. Requests refused by their own quotas (2, 3) do not count
as demand on the deployment; shed ones do, since a caller turned away for load is still
asking.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import NamedTuple

from tailguard.serve.deployment.view import LoadView
from tailguard.serve.gate.finish import estimate_finish, estimate_finish_batched
from tailguard.serve.gate.policy import AdmissionSettings
from tailguard.serve.gate.quotas import Hold, TokenBucket, take, within_concurrency
from tailguard.serve.gate.tenants import Priority

__all__ = ["PROBE_AFTER_S", "AdmissionRequest", "Decision", "RejectReason", "decide",
           "predict_finish", "surely_admitted"]

PROBE_AFTER_S = 1.0  # with no batch measured for this long, an idle replica takes a probe


class RejectReason(StrEnum):
    RATE_LIMITED = "rate_limited"
    CONCURRENCY = "concurrency"
    SHED = "shed"
    DEADLINE = "deadline"


_STATUS = {
    RejectReason.RATE_LIMITED: 429,
    RejectReason.CONCURRENCY: 429,
    RejectReason.SHED: 429,
    RejectReason.DEADLINE: 504,
}
_QUOTA_REASONS = frozenset({RejectReason.RATE_LIMITED, RejectReason.CONCURRENCY})


class AdmissionRequest(NamedTuple):
    """One request as admission sees it. ``deadline_s`` is its SLO deadline, absolute, on
    the clock of ``now``. ``bucket`` (None: no rate limit), ``inflight`` (the caller's
    requests admitted and not yet answered) and ``max_concurrency`` are its quotas; a request
    judged again at its real size (:meth:`TenantGate.resize`) passes none."""

    priority: Priority
    deadline_s: float
    rows: int = 1
    bucket: TokenBucket | None = None
    inflight: int = 0
    max_concurrency: int | None = None


class Decision(NamedTuple):
    """The outcome of :func:`decide`, with the state to store back.

    ``bucket``: the caller's bucket (a token taken only if admitted). ``hold``: the caller's
    hold-off from now on (None: none). ``counts_demand``: the request's rows count in the
    caller's demand. ``predicted_finish_s``: the feasibility estimate, when one was made.
    ``probe``: admitted as a probe of a stale service model (the deployment notes it).
    """

    admitted: bool
    reason: RejectReason | None = None
    retry_after_s: float | None = None
    bucket: TokenBucket | None = None
    hold: Hold | None = None
    counts_demand: bool = True
    predicted_finish_s: float | None = None
    probe: bool = False

    @property
    def status(self) -> int | None:
        return None if self.reason is None else _STATUS[self.reason]


def predict_finish(request: AdmissionRequest, view: LoadView, now: float) -> float:
    """When ``request`` would finish at this load (``inf`` with no capacity); ``view`` must
    not be cold."""
    fit = view.service
    assert fit is not None
    cap = max(1, view.batch_rows)
    rows = max(1, request.rows)
    ahead = max(0, view.rows_ahead)
    full_s = fit.seconds(cap)
    # A request bigger than the cap runs as a batch of its own, whole.
    own_s = fit.seconds(max(rows, min(cap, ahead + rows)))
    share = view.share
    over = share is not None and not share.within
    if not view.replica_free_in_s:
        return estimate_finish(
            now, ahead, fit.rows_per_s(cap), view.replicas, own_s,
            inflight_rows=view.inflight_rows, batch_wait_s=view.batch_wait_s,
            drain_rows_per_s=share.rows_per_s if over and share is not None else None)
    # Rows ahead fill batches; the request rides in the one holding the remainder. A caller
    # over its share has only its part of each batch: its rows ahead take that many more.
    per_batch = float(cap)
    if over and share is not None:
        full_rate = fit.rows_per_s(cap) * max(1, view.replicas)
        per_batch *= min(1.0, max(0.0, share.rows_per_s) / full_rate)
    fill = ahead + min(rows, cap) - 1
    before = int(min(1e9, fill // per_batch)) if per_batch > 1e-9 else 10**9
    return estimate_finish_batched(now, view.replica_free_in_s, before, full_s, own_s,
                                   batch_wait_s=view.batch_wait_s)


def surely_admitted(request: AdmissionRequest, bound_s: float | None,
                    settings: AdmissionSettings, now: float) -> bool:
    """True when :func:`decide` is sure to admit ``request``, without a view: no quota and no
    hold apply (the caller checks), and ``bound_s``, an upper bound on its predicted finish
    (``Deployment.finish_bound_s``), fits the tightest share of its budget that a request of
    its class may be given. Admission's shortcut at light load: the same outcome as
    ``decide``, without building a view."""
    if bound_s is None or request.bucket is not None or request.max_concurrency is not None:
        return False
    fraction = settings.shed_fraction(request.priority)
    if fraction is None:
        return now < request.deadline_s
    return bound_s <= fraction * (request.deadline_s - now)


def decide(request: AdmissionRequest, view: LoadView, hold: Hold | None,
           settings: AdmissionSettings, now: float) -> Decision:
    """Admit or refuse ``request``; see the module docstring for the order of checks."""
    if hold is not None and now >= hold.until_s:
        hold = None  # its overshoot has passed
    if now >= request.deadline_s:
        return Decision(False, RejectReason.DEADLINE, None, request.bucket, hold,
                        counts_demand=False)
    taken: TokenBucket | None = None
    if request.bucket is not None:
        allowed, after, wait_s = take(request.bucket, now)
        if not allowed:
            return Decision(False, RejectReason.RATE_LIMITED, settings.clamp_retry(wait_s),
                            request.bucket, hold, counts_demand=False)
        taken = after
    if not within_concurrency(request.inflight, request.max_concurrency):
        retry = (view.service.seconds(view.batch_rows) if view.service is not None
                 else settings.default_retry_after_s)
        return Decision(False, RejectReason.CONCURRENCY, settings.clamp_retry(retry),
                        request.bucket, hold, counts_demand=False)
    idle = view.idle_replicas
    if (view.probed_ago_s is not None and view.probed_ago_s >= PROBE_AFTER_S
            and view.rows_ahead <= 0 and (idle > 0 if idle is not None
                                          else 0.0 in view.replica_free_in_s)):
        # Nothing measured (or probed) for a while, an idle replica and nothing ahead: run
        # this one as a probe, whatever the fit predicts. It delays no one, and a fit that
        # predicts a miss for everything would otherwise shed everything, forever: shed
        # requests make no batch to correct it. One probe, then the clock starts again.
        return Decision(True, bucket=taken, hold=None, probe=True)
    if hold is not None and hold.holds(request.rows, now):
        # The backlog that shed this caller's last request cannot have drained yet: shed
        # this one too, without predicting again — under a flood, most requests end here.
        return Decision(False, RejectReason.SHED, settings.clamp_retry(hold.until_s - now),
                        request.bucket, hold)
    share = view.share
    within = share is None or share.within
    fraction = settings.shed_fraction(request.priority, within_share=within)
    if fraction is None or view.cold:
        return Decision(True, bucket=taken, hold=hold)
    finish = predict_finish(request, view, now)
    allowed_s = fraction * (request.deadline_s - now)
    overshoot_s = (finish - now) - allowed_s
    if overshoot_s <= 0:
        return Decision(True, bucket=taken, hold=hold, predicted_finish_s=finish)
    # Only the overload holds: a caller within its share is shed rarely, on a burst, and its
    # next request may well fit. Without new arrivals the backlog ahead shrinks by the
    # overshoot in that much time.
    if not within and math.isfinite(finish):
        hold = Hold(finish - allowed_s, request.rows)
    return Decision(False, RejectReason.SHED, settings.clamp_retry(overshoot_s),
                    request.bucket, hold, predicted_finish_s=finish)
