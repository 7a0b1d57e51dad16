"""The generated prometheus.yml of ``tailguard monitor`` (the server itself: test_monitor)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tailguard.observe.prometheus import MonitorSpec, scrape_config


def test_scrape_config_targets_the_gateway_with_the_key_from_a_file(tmp_path: Path) -> None:
    spec = MonitorSpec(gateway_url="http://127.0.0.1:8123", data_dir=tmp_path,
                       api_key="secret", scrape_interval_s=1, evaluation_interval_s=0.5)
    doc = yaml.safe_load(scrape_config(spec, tmp_path / "r.yml", tmp_path / "k"))
    assert doc["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s",
                             "evaluation_interval": "500ms"}
    assert doc["rule_files"] == [str(tmp_path / "r.yml")]
    (job,) = doc["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8123"]}]
    assert job["metrics_path"] == "/metrics" and job["scheme"] == "http"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(tmp_path / "k")}
    assert "secret" not in scrape_config(spec, tmp_path / "r.yml", tmp_path / "k")


def test_without_a_key_no_authorization(tmp_path: Path) -> None:
    spec = MonitorSpec(gateway_url="http://gw:80/prefix/", data_dir=tmp_path)
    (job,) = yaml.safe_load(scrape_config(spec, tmp_path / "r.yml", None))["scrape_configs"]
    assert "authorization" not in job and job["metrics_path"] == "/prefix/metrics"


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://x", "http://"])
def test_a_bad_gateway_url_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gateway URL"):
        MonitorSpec(gateway_url=url, data_dir=tmp_path)
