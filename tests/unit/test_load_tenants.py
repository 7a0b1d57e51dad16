"""Tenant mixes: files, shares by weight or Zipf, the seeded draw, the per-request plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailguard.load.tenants import (
    Tenant,
    TenantFileError,
    TenantMix,
    read_tenants,
    request_plan,
    tenant_mix,
)


def test_weights_set_the_shares() -> None:
    mix = TenantMix((Tenant("gold", "kg", 3.0), Tenant("silver", "ks", 1.5),
                     Tenant("free", None, 0.5)))
    np.testing.assert_allclose(mix.probabilities(), [0.6, 0.3, 0.1])
    drawn = mix.assign(200_000, seed=5)
    assert drawn.dtype == np.int16
    shares = np.bincount(drawn, minlength=3) / drawn.size
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.005)


def test_zipf_skew_ranks_tenants_in_file_order() -> None:
    mix = TenantMix(tuple(Tenant(f"t{i}", f"k{i}", weight=99.0) for i in range(5)), zipf_s=1.2)
    raw = np.arange(1, 6, dtype=float) ** -1.2
    np.testing.assert_allclose(mix.probabilities(), raw / raw.sum())  # weights are ignored
    shares = np.bincount(mix.assign(300_000, seed=1), minlength=5) / 300_000
    np.testing.assert_allclose(shares, raw / raw.sum(), atol=0.005)
    assert list(shares) == sorted(shares, reverse=True)


def test_draw_is_seeded() -> None:
    mix = TenantMix((Tenant("a", "ka"), Tenant("b", "kb")))
    np.testing.assert_array_equal(mix.assign(1000, seed=3), mix.assign(1000, seed=3))
    assert not np.array_equal(mix.assign(1000, seed=3), mix.assign(1000, seed=4))


def test_plan_gives_each_request_its_tenants_bytes_round_robin_over_bodies() -> None:
    per_tenant = [[b"a0", b"a1"], [b"b0", b"b1"]]
    assignment = np.array([0, 1, 1, 0, 1], dtype=np.int16)
    assert request_plan(per_tenant, assignment) == [b"a0", b"b1", b"b0", b"a1", b"b0"]
    with pytest.raises(ValueError, match="same number"):
        request_plan([[b"a0"], [b"b0", b"b1"]], assignment)


def test_files_list_or_mapping_yaml_or_json(tmp_path: Path) -> None:
    listed = tmp_path / "t.yaml"
    listed.write_text("- {name: gold, api_key: kg, weight: 3}\n- {name: anon}\n")
    mix = read_tenants(listed)
    assert mix.tenants == (Tenant("gold", "kg", 3.0), Tenant("anon", None, 1.0))
    assert mix.tenants[0].headers() == (("Authorization", "Bearer kg"),)
    assert mix.tenants[1].headers() == ()
    as_json = tmp_path / "t.json"
    as_json.write_text('{"zipf": 1.1, "tenants": [{"name": "a", "api_key": "ka"},'
                       ' {"name": "b", "api_key": 7}]}')
    mix = read_tenants(as_json)
    assert mix.zipf_s == 1.1 and mix.names == ("a", "b")
    assert mix.tenants[1].api_key == "7"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "non-empty list"),
        ({"zipf": 1.0}, "non-empty list"),
        ([{"api_key": "k"}], "needs a name"),
        ([{"name": "a", "key": "k"}], "unknown keys"),
        ([{"name": "a", "weight": 0}], "weight must be > 0"),
        ([{"name": "a"}, {"name": "a"}], "repeated: a"),
        ({"zipf": -1, "tenants": [{"name": "a"}]}, "zipf must be"),
        ({"zipf": "x", "tenants": [{"name": "a"}]}, "zipf must be a number"),
        ({"tenant": []}, "unknown keys"),
        (["a"], "a tenant is a mapping"),
    ],
)
def test_bad_tenant_data_says_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(TenantFileError, match=message):
        tenant_mix(data)


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TenantFileError, match="cannot read"):
        read_tenants(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: [unclosed\n")
    with pytest.raises(TenantFileError, match="not YAML"):
        read_tenants(bad)


def test_the_runs_own_calls_use_the_api_key_else_the_first_tenants() -> None:
    from tailguard.load.spec import LoadSpec

    mix = TenantMix((Tenant("a", "ka"), Tenant("b", "kb")))
    assert LoadSpec(rate_rps=1.0, tenants=mix).headers() == (("Authorization", "Bearer ka"),)
    assert LoadSpec(rate_rps=1.0, tenants=mix, api_key="admin").headers() == (
        ("Authorization", "Bearer admin"),)
    assert LoadSpec(rate_rps=1.0, tenants=TenantMix((Tenant("anon"),))).headers() == ()
