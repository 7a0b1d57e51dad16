"""Training/serving skew: sampled served inputs against the training data's histograms,
exposed as tailguard_feature_psi{deployment,feature}."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from tailguard.data.checks import parse_rules, run_check
from tailguard.serve.app import Gateway
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.skew import SkewError, SkewMonitor
from tailguard.serve.skew_spec import SkewSpec
from tests.unit.fake_replicas import FakeBackend
from tests.unit.test_data_checks import make, write


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write(tmp_path_factory.mktemp("skew"), "train", make(3000, 0))
    run_check(path, parse_rules({}))  # keeps checks/report.json: the reference
    return Path(path)


def test_monitor_psi_is_small_for_the_same_data_and_large_for_shifted(train: Path) -> None:
    spec = SkewSpec(reference=train, tensor="INPUT0", features=["x", "age"], sample_every=2,
                    min_rows=100)
    rng = np.random.default_rng(5)
    same, shifted = SkewMonitor(spec), SkewMonitor(spec)
    for _ in range(40):
        rows = np.stack([rng.normal(size=32), rng.integers(18, 80, 32)], axis=1)
        same.observe({"INPUT0": rows.astype(np.float32)})
        shifted.observe({"INPUT0": (rows + np.array([2.0, 0.0])).astype(np.float32)})
    assert set(same.psi()) == {"x", "age"} and max(same.psi().values()) < 0.1
    assert shifted.psi()["x"] > 0.5 and shifted.psi()["age"] < 0.1
    assert SkewMonitor(spec).psi() == {}  # nothing sampled yet: no figure, not a zero
    with pytest.raises(SkewError, match="no numeric histogram"):
        SkewMonitor(spec.model_copy(update={"features": ["text"]}))


def test_gateway_exposes_feature_psi(train: Path) -> None:
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0,
                          skew={"reference": str(train), "tensor": "INPUT0", "features": ["x"],
                                "sample_every": 1, "min_rows": 10})
    gateway = Gateway(ServeConfig(deployments=[spec]), backend=FakeBackend())
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [20, 1],
                        "data": [5.0 + i / 100 for i in range(20)]}]}
    with TestClient(gateway) as client:
        assert client.post("/v2/models/echo/infer", json=body).status_code == 200
        text = client.get("/metrics").text
    line, = [li for li in text.splitlines() if li.startswith("tailguard_feature_psi{")]
    assert 'deployment="echo"' in line and 'feature="x"' in line and float(line.split()[-1]) > 1
