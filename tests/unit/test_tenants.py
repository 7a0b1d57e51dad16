from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from tailguard.serve.gate.tenants import (
    Priority,
    TenantDirectory,
    TenantSpec,
    hash_api_key,
    verify_api_key,
)

KEY_A = "sk-test-alpha-0123456789"
KEY_B = "sk-test-bravo-9876543210"


def test_priority_order_is_critical_standard_sheddable() -> None:
    assert Priority.by_rank() == (Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE)
    assert [p.rank for p in Priority.by_rank()] == [0, 1, 2]
    assert Priority("sheddable") is Priority.SHEDDABLE


def test_hash_api_key_is_prefixed_sha256() -> None:
    assert hash_api_key("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert verify_api_key("abc", hash_api_key("abc"))
    assert not verify_api_key("abd", hash_api_key("abc"))
    with pytest.raises(ValueError, match="sha256"):
        verify_api_key("abc", "md5:00")


def test_plaintext_and_hashed_keys_are_stored_as_digests() -> None:
    digest = hash_api_key(KEY_B)
    spec = TenantSpec(id="t", api_keys=[KEY_A, digest.upper().replace("SHA256:", "sha256:")])
    assert spec.api_keys == (hash_api_key(KEY_A), digest)
    assert KEY_A not in spec.api_keys


def test_keys_never_appear_in_repr_or_str() -> None:
    spec = TenantSpec(id="t", api_keys=[KEY_A])
    for text in (repr(spec), str(spec), repr(TenantDirectory([spec]))):
        assert KEY_A not in text
        assert hash_api_key(KEY_A) not in text
        assert "api_keys" not in text


def test_invalid_key_error_does_not_echo_the_key() -> None:
    with pytest.raises(ValidationError) as info:
        TenantSpec(id="t", api_keys=[KEY_A, KEY_A])
    assert KEY_A not in str(info.value)
    with pytest.raises(ValidationError, match="non-empty"):
        TenantSpec(id="t", api_keys=[""])
    with pytest.raises(ValidationError, match="list of keys"):
        TenantSpec.model_validate({"id": "t", "api_keys": KEY_A})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight": 0}, "greater than 0"),
        ({"weight": -1.0}, "greater than 0"),
        ({"rate_limit_rps": 0}, "greater than 0"),
        ({"burst": 5}, "burst is set but rate_limit_rps is not"),
        ({"max_concurrency": 0}, "greater than or equal to 1"),
        ({"p99_ms": 0}, "greater than 0"),
        ({"deployments": []}, "at least one deployment"),
        ({"priority": "urgent"}, "critical"),
        ({"id": "bad id!"}, "tenant id"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TenantSpec.model_validate({"id": "t", **fields})


def test_spec_is_frozen() -> None:
    spec = TenantSpec(id="t")
    with pytest.raises(ValidationError):
        spec.weight = 3.0  # type: ignore[misc]


def test_effective_burst_defaults_to_one_second_of_rate() -> None:
    assert TenantSpec(id="t").effective_burst is None
    assert TenantSpec(id="t", rate_limit_rps=0.2).effective_burst == 1.0
    assert TenantSpec(id="t", rate_limit_rps=12.5).effective_burst == 13.0
    assert TenantSpec(id="t", rate_limit_rps=10, burst=3).effective_burst == 3.0


def _directory() -> TenantDirectory:
    return TenantDirectory.from_config(
        [
            {"id": "alpha", "api_keys": [KEY_A], "deployments": ["m1", "m2"]},
            {
                "id": "bravo",
                "api_keys": [hash_api_key(KEY_B), "second-key"],
                "priority": "critical",
            },
            TenantSpec(id="nokeys"),
        ]
    )


def test_authenticate_finds_the_owner_of_a_key() -> None:
    directory = _directory()
    alpha = directory.authenticate(KEY_A)
    assert alpha is not None and alpha.id == "alpha"
    bravo = directory.authenticate("second-key")
    assert bravo is not None and bravo.id == "bravo" and bravo.priority is Priority.CRITICAL
    assert directory.authenticate(KEY_B) is bravo
    assert directory.authenticate("sk-wrong") is None
    assert directory.authenticate("") is None
    assert directory.authenticate(None) is None
    assert hash_api_key(KEY_A) != KEY_A and directory.authenticate(hash_api_key(KEY_A)) is None
    assert len(directory) == 3 and "alpha" in directory and directory.get("nokeys") is not None


def test_authenticate_compares_every_digest_without_early_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bool] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        result = real(a, b)
        calls.append(result)
        return result

    monkeypatch.setattr(hmac, "compare_digest", counting)  # what tenants.py calls
    directory = _directory()
    assert directory.authenticate(KEY_A) is not None  # first digest matches
    assert calls == [True, False, False]
    calls.clear()
    assert directory.authenticate("nope") is None
    assert calls == [False, False, False]


def test_may_use_honours_the_deployment_list_and_wildcard() -> None:
    directory = _directory()
    alpha = directory.get("alpha")
    bravo = directory.get("bravo")
    assert alpha is not None and bravo is not None
    assert directory.may_use(alpha, "m1") and directory.may_use(alpha, "m2")
    assert not directory.may_use(alpha, "m3")
    assert directory.may_use(bravo, "anything")


def test_directory_refuses_duplicate_ids_and_shared_keys() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        TenantDirectory([TenantSpec(id="a"), TenantSpec(id="a")])
    with pytest.raises(ValueError, match="share an API key") as info:
        TenantDirectory(
            [TenantSpec(id="a", api_keys=[KEY_A]), TenantSpec(id="b", api_keys=[KEY_A])]
        )
    assert KEY_A not in str(info.value)
