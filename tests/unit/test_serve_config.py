"""Serve config checks that changed with issue 12: a renamed batching field, reserved ids."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tailguard.serve.config import DeploymentSpec, default_config

ECHO = {"name": "e", "model": "tailguard.models.echo:Echo"}


def test_the_old_batch_fraction_is_refused_with_what_it_became() -> None:
    with pytest.raises(ValidationError, match="now batch_slo_share.*0.35 is 0.7"):
        DeploymentSpec.model_validate({**ECHO, "batch_slo_fraction": 0.35})
    assert DeploymentSpec.model_validate({**ECHO, "batch_slo_share": 0.5}).batch_slo_share == 0.5


def test_the_built_in_minilm_has_an_objective_it_can_meet() -> None:
    minilm = default_config().deployment("minilm")
    assert minilm is not None and minilm.p99_ms == 100 and minilm.batch_slo_share == 0.7
