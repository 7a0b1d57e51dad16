"""A tenant mix for the load generator: who sends each request, and with which API key.

A run with a :class:`TenantMix` assigns every request to one tenant before the run starts
(a seeded draw, one small integer per request), and sends it with that tenant's key as
``Authorization: Bearer KEY``; the report then gives every figure per tenant as well. The
draw follows the tenants' weights, or a Zipf skew over their order in the file (the first
tenant is the heaviest: probability proportional to ``1 / rank ** s``)::

    # tenants.yaml: a list ...
    - {name: gold, api_key: k-gold, weight: 3}
    - {name: free, api_key: k-free, weight: 1}

    # ... or a mapping, with a Zipf skew instead of weights
    zipf: 1.1
    tenants:
      - {name: t1, api_key: k1}
      - {name: t2, api_key: k2}
      - {name: t3, api_key: k3}

JSON works too (it is YAML). ``api_key`` may be left out (an anonymous tenant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Tenant indexes are stored as int16 per request.
MAX_TENANTS = 32_767
# The tenant draw uses a stream of its own, so adding tenants leaves the arrivals unchanged.
_TENANT_STREAM = 0x7E4A


class TenantFileError(ValueError):
    """A tenants file cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Tenant:
    """One sender: ``name`` in the report, ``api_key`` on its requests, ``weight`` of traffic."""

    name: str
    api_key: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tenant needs a name")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"tenant {self.name!r}: weight must be > 0, got {self.weight}")
        if self.api_key is not None and any(c in self.api_key for c in "\r\n"):
            raise ValueError(f"tenant {self.name!r}: api_key must not contain line breaks")

    def headers(self) -> tuple[tuple[str, str], ...]:
        if self.api_key is None:
            return ()
        return (("Authorization", f"Bearer {self.api_key}"),)


@dataclass(frozen=True)
class TenantMix:
    """The tenants of a run and how requests are shared among them (weights or Zipf)."""

    tenants: tuple[Tenant, ...]
    zipf_s: float | None = None

    def __post_init__(self) -> None:
        if not self.tenants:
            raise ValueError("a tenant mix needs at least one tenant")
        if len(self.tenants) > MAX_TENANTS:
            raise ValueError(f"at most {MAX_TENANTS} tenants, got {len(self.tenants)}")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"tenant names must be unique; repeated: {', '.join(dupes)}")
        if self.zipf_s is not None and not (self.zipf_s > 0 and math.isfinite(self.zipf_s)):
            raise ValueError(f"zipf must be a number > 0, got {self.zipf_s}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tenants)

    def probabilities(self) -> np.ndarray:
        """The share of requests of each tenant, in file order (sums to 1)."""
        if self.zipf_s is not None:
            ranks = np.arange(1, len(self.tenants) + 1, dtype=np.float64)
            raw = ranks ** -self.zipf_s
        else:
            raw = np.array([t.weight for t in self.tenants], dtype=np.float64)
        return np.asarray(raw / raw.sum())

    def assign(self, n: int, seed: int) -> np.ndarray:
        """The tenant index (int16) of each of ``n`` requests, a seeded draw."""
        rng = np.random.default_rng([seed, _TENANT_STREAM])
        return rng.choice(len(self.tenants), size=n, p=self.probabilities()).astype(np.int16)


def _tenant(entry: Any, where: str) -> Tenant:
    if not isinstance(entry, dict):
        raise TenantFileError(f"{where}: a tenant is a mapping with name, api_key and weight")
    unknown = set(entry) - {"name", "api_key", "weight"}
    if unknown:
        raise TenantFileError(f"{where}: unknown keys {sorted(unknown)} "
                              "(use name, api_key, weight)")
    try:
        key = entry.get("api_key")
        return Tenant(str(entry["name"]), None if key is None else str(key),
                      float(entry.get("weight", 1.0)))
    except KeyError:
        raise TenantFileError(f"{where}: a tenant needs a name") from None
    except (TypeError, ValueError) as exc:
        raise TenantFileError(f"{where}: {exc}") from None


def tenant_mix(data: Any, source: str = "tenants") -> TenantMix:
    """A :class:`TenantMix` from parsed YAML/JSON: a list of tenants, or a mapping with
    ``tenants`` and an optional ``zipf``."""
    zipf: float | None = None
    if isinstance(data, dict):
        unknown = set(data) - {"tenants", "zipf"}
        if unknown:
            raise TenantFileError(f"{source}: unknown keys {sorted(unknown)} "
                                  "(use tenants and zipf)")
        if data.get("zipf") is not None:
            try:
                zipf = float(data["zipf"])
            except (TypeError, ValueError):
                raise TenantFileError(f"{source}: zipf must be a number, got "
                                      f"{data['zipf']!r}") from None
        data = data.get("tenants")
    if not isinstance(data, list) or not data:
        raise TenantFileError(f"{source}: give a non-empty list of tenants "
                              "({name, api_key, weight}), or a mapping with 'tenants'")
    tenants = tuple(_tenant(e, f"{source}: tenant {i + 1}") for i, e in enumerate(data))
    try:
        return TenantMix(tenants, zipf)
    except ValueError as exc:
        raise TenantFileError(f"{source}: {exc}") from None


def read_tenants(path: Path) -> TenantMix:
    """The tenant mix of a YAML or JSON file (see the module docstring for the format)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TenantFileError(f"cannot read tenants file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise TenantFileError(f"{path}: not YAML or JSON ({exc})") from None
    return tenant_mix(data, str(path))


def request_plan(per_tenant: Sequence[Sequence[bytes]], assignment: np.ndarray) -> list[bytes]:
    """The request bytes of each request: tenant ``assignment[i]``'s ``i % k``-th request.

    ``per_tenant[t]`` holds tenant ``t``'s requests (the same ``k`` bodies, each tenant with
    its own key). Built once before the run, so the send path does one list lookup.
    """
    k = len(per_tenant[0])
    if any(len(reqs) != k for reqs in per_tenant):
        raise ValueError("every tenant needs the same number of request bodies")
    flat = np.empty(len(per_tenant) * k, dtype=object)
    for t, reqs in enumerate(per_tenant):
        for j, req in enumerate(reqs):
            flat[t * k + j] = req
    index = assignment.astype(np.int64) * k + np.arange(assignment.size) % k
    plan: list[bytes] = flat[index].tolist()
    return plan
