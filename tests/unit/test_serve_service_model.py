"""Online batch service-time model and the admission deadlock it prevents."""

from __future__ import annotations

import pytest

from tailguard.serve.deployment.estimates import ServiceModel


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
    from tailguard.serve.deployment.view import LoadView
    from tailguard.serve.gate.decide import AdmissionRequest, decide
    from tailguard.serve.gate.policy import AdmissionSettings
    from tailguard.serve.gate.tenants import Priority

    model = ServiceModel()
    for _ in range(20):
        model.observe(32, 0.35)
    view = LoadView(0, (0.0,), 0, model.fit, batch_rows=32)
    request = AdmissionRequest(Priority.STANDARD, deadline_s=0.25)
    assert decide(request, view, None, AdmissionSettings(), 0.0).admitted


def test_profile_for_the_autoscaler_is_the_same_fit() -> None:
    model = ServiceModel()
    assert model.profile(8).max_batch_size == 8  # the default guess while unmeasured
    for k in (1, 8) * 10:
        model.observe(k, 0.01 + 0.002 * k)
    p = model.profile(8)
    assert (p.fixed_s, p.per_row_s) == pytest.approx(model.coefficients())
    assert model.fit is not None and model.fit.largest == (8, pytest.approx(0.026))


def test_noisy_negative_slope_falls_back_to_proportional() -> None:
    model = ServiceModel()
    for k, t in ((30, 0.31), (32, 0.30), (31, 0.305)) * 5:
        model.observe(k, t)
    fixed, per_row = model.coefficients()
    assert fixed == 0.0 and per_row == pytest.approx(0.0098, rel=0.05)
