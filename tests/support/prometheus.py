"""The Prometheus binaries for tests: the project's unpacked Debian package, else PATH.

``make test`` runs scripts/install-prometheus.sh first. Without the binaries a test skips on a
developer's machine, but fails in CI (``CI=true``): there these tests must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tailguard.observe.prometheus import find_tool


def require_tool(name: str) -> Path:
    path = find_tool(name)
    if path is not None:
        return path
    message = f"{name} not found: run scripts/install-prometheus.sh (make test does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
