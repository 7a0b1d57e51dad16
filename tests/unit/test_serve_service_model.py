"""Online batch service-time model and the admission deadlock it prevents."""

from __future__ import annotations

import pytest

from tailguard.serve.service_model import ServiceModel
from tests.unit.test_serve_tenancy import _setup


def test_recovers_an_affine_profile() -> None:
    model = ServiceModel()
    for k in (1, 4, 8, 16, 32) * 20:
        model.observe(k, 0.010 + 0.002 * k)
    fixed, per_row = model.coefficients()
    assert fixed == pytest.approx(0.010, rel=1e-6)
    assert per_row == pytest.approx(0.002, rel=1e-6)
    assert model.rows_per_s(32) == pytest.approx(32 / 0.074)


def test_single_batch_size_fits_through_the_origin() -> None:
    model = ServiceModel()
    for _ in range(10):
        model.observe(32, 0.32)
    assert model.seconds(1) == pytest.approx(0.01)  # a lone row is not a full batch's time


def test_follows_drift() -> None:
    model = ServiceModel()
    for _ in range(50):
        model.observe(8, 0.08)
    for _ in range(200):
        model.observe(8, 0.04)
    assert model.seconds(8) == pytest.approx(0.04, rel=0.01)


def test_unmeasured_model_reports_none() -> None:
    assert ServiceModel().rows_per_s(8) is None and not ServiceModel().measured


def test_lone_request_after_a_burst_of_full_batches_is_admitted() -> None:
    # Regression: feasibility used the last batch's time (a full batch, 0.35 s) for a lone
    # request with a 250 ms objective, shed it — and every later one, since shed requests
    # never make the small batches that would correct the estimate.
    from tailguard.serve.slots import Slot, SlotState

    gate, dep, _ = _setup(p99_ms=250)
    dep._slots.append(Slot(0, state=SlotState.READY))  # feasibility only judges a live fleet
    for _ in range(20):
        dep._service.observe(32, 0.35)
    who = gate.authenticate([(b"authorization", b"Bearer t-key")])
    gate.admit(who, dep, 1, now=0.0)  # does not raise


def test_noisy_negative_slope_falls_back_to_proportional() -> None:
    model = ServiceModel()
    for k, t in ((30, 0.31), (32, 0.30), (31, 0.305)) * 5:
        model.observe(k, t)
    fixed, per_row = model.coefficients()
    assert fixed == 0.0 and per_row == pytest.approx(0.0098, rel=0.05)
