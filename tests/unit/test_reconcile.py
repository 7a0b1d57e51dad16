"""The config plan: a pure function of (running config, wanted config)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tailguard.serve.config import ServeConfig
from tailguard.serve.live_apply import ConfigInvalid, parse_config
from tailguard.serve.reconcile import (
    Change,
    RestartRequired,
    compute_plan,
    describe_validation_error,
    inherit_unset,
)

ECHO = "tailguard.models.echo:Echo"
SLEEP = "tailguard.models.sleep:Sleep"


def config(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "port": 9000,
        "deployments": [
            {"name": "a", "model": ECHO, "replicas": 2, "max_wait_ms": 1},
            {"name": "b", "model": SLEEP, "options": {"sleep_ms": 1}},
        ],
        "tenants": [
            {"id": "gold", "api_keys": ["k-gold"], "rate_limit_rps": 100},
            {"id": "free", "api_keys": ["k-free"], "deployments": ["a"]},
        ],
    }
    base.update(over)
    return base


def plan_of(old: dict[str, Any], new: dict[str, Any]) -> Any:
    return compute_plan(ServeConfig.model_validate(old), ServeConfig.model_validate(new))


def test_same_config_is_no_change() -> None:
    plan = plan_of(config(), config())
    assert plan.empty and plan.render() == "no changes"


def test_plaintext_and_hashed_keys_are_the_same_key() -> None:
    from tailguard.serve.gate.tenants import hash_api_key

    hashed = config()
    hashed["tenants"][0]["api_keys"] = [hash_api_key("k-gold")]
    assert plan_of(config(), hashed).empty


def test_model_change_rolls_and_live_fields_do_not() -> None:
    new = config()
    new["deployments"][0] = {"name": "a", "model": SLEEP, "replicas": 3, "max_wait_ms": 5}
    new["deployments"][1] = {**new["deployments"][1], "max_batch_size": 8, "p99_ms": 50}
    plan = plan_of(config(), new)
    a, b = plan.deployments
    assert (a.name, a.change, a.roll, a.scale_to) == ("a", Change.UPDATE, True, 3)
    assert {c.path for c in a.fields} == {"model", "replicas", "max_wait_ms"}
    assert (b.roll, b.scale_to) == (False, None)
    assert {c.path for c in b.fields} == {"max_batch_size", "p99_ms"}
    text = plan.render()
    assert "~ deployment a  (rolling restart, scale to 3)" in text
    assert f"model: {ECHO} -> {SLEEP}" in text


def test_options_change_rolls() -> None:
    new = config()
    new["deployments"][1]["options"] = {"sleep_ms": 2}
    (b,) = plan_of(config(), new).deployments
    assert b.roll and b.fields[0].path == "options"


def test_added_and_removed_deployments_and_tenants() -> None:
    new = config(tenants=[{"id": "gold", "api_keys": ["k-gold"], "rate_limit_rps": 200},
                          {"id": "new", "api_keys": ["k-new"]}])
    new["deployments"] = [new["deployments"][0], {"name": "c", "model": ECHO}]
    plan = plan_of(config(), new)
    assert [(d.name, d.change) for d in plan.deployments] == [
        ("c", Change.ADD), ("b", Change.REMOVE)]
    assert [(t.id, t.change) for t in plan.tenants] == [
        ("new", Change.ADD), ("free", Change.REMOVE), ("gold", Change.UPDATE)]
    text = plan.render()
    assert "+ deployment c" in text and "- deployment b  (drain" in text
    assert "- tenant free  (its keys stop working at once)" in text
    assert "rate_limit_rps: 100.0 -> 200.0" in text


def test_keys_are_shown_as_counts_never_digests() -> None:
    new = config()
    new["tenants"][0]["api_keys"] = ["k-gold", "k-gold-2"]
    plan = plan_of(config(), new)
    text = plan.render()
    assert "api_keys: 1 key(s) -> 2 key(s)" in text
    assert "sha256" not in text and "sha256" not in str(plan.to_dict())


def test_host_port_backend_need_a_restart() -> None:
    plan = plan_of(config(), config(port=9001, backend="ray"))
    assert [c.path for c in plan.restart_needed] == ["port", "backend"]
    with pytest.raises(RestartRequired, match="port, backend cannot change on a running"):
        raise RestartRequired(plan)
    new = config()
    new["deployments"][1]["backend"] = "ray"
    assert [c.path for c in plan_of(config(), new).restart_needed] == [
        "deployments[b].backend"]


def test_unset_restart_fields_are_inherited() -> None:
    old = ServeConfig.model_validate(config())
    new = config()
    del new["port"]
    inherited = inherit_unset(old, ServeConfig.model_validate(new))
    assert inherited.port == 9000 and compute_plan(old, inherited).empty


def test_server_live_fields() -> None:
    plan = plan_of(config(), config(max_request_bytes=4096, admission={"enabled": False}))
    assert [c.path for c in plan.server] == ["max_request_bytes", "admission"]
    assert not plan.restart_needed


def test_replicas_of_an_autoscaled_deployment_are_not_scaled() -> None:
    auto = config()
    auto["deployments"][0]["autoscaling"] = {"min_replicas": 1, "max_replicas": 4}
    new = config()
    new["deployments"][0] = {**auto["deployments"][0], "replicas": 3}
    (a,) = plan_of(auto, new).deployments
    assert a.scale_to is None and not a.roll


def test_validation_error_names_the_field_by_deployment_name() -> None:
    bad = config()
    bad["deployments"][1]["max_batch_sise"] = 4
    with pytest.raises(ConfigInvalid, match=r"deployments\[b\]\.max_batch_sise: Extra inputs"):
        parse_config(bad)
    bad = config()
    bad["tenants"][1]["rate_limit_rps"] = -1
    with pytest.raises(ValidationError) as info:
        ServeConfig.model_validate(bad)
    assert describe_validation_error(info.value, bad).startswith(
        "tenants[free].rate_limit_rps: Input should be greater than 0")
