"""A running job's tailguard_train_* scraped from its engine's endpoint, across a restart."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tailguard.train import LocalEngine, TrainResult, parse_job
from tailguard.train.trainer import FAULT_ENV, STEP_DELAY_ENV
from tests.integration.digits_data import make_digits

# Two worker start-ups (torch imports): ~15 s idle, over a minute on a loaded machine.
pytestmark = pytest.mark.timeout(240)
NAMES = ("tailguard_train_loss", "tailguard_train_samples_per_second",
         "tailguard_train_step_seconds_count", "tailguard_train_restarts_total",
         "tailguard_train_eval_metric", "tailguard_train_checkpoint_seconds_count",
         "tailguard_train_data_wait_share", "tailguard_train_world_size")


def _scrape(url: str) -> dict[str, float]:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return {}
    return {s.name + (f"[{s.labels['metric']}]" if "metric" in s.labels else ""): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_running_job_exports_its_series_and_counts_a_restart(tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    digits = make_digits(tmp_path / "digits")
    job = parse_job({
        "name": "scraped",
        "model": {"builder": "mlp", "kwargs": {"in_features": 64, "hidden": [32],
                                               "out_features": 10}},
        "data": {"train": str(digits["train"]), "eval": str(digits["test"]),
                 "features": ["px*"], "label": "label"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "batch_size": 32, "max_steps": 40, "world_size": 1, "checkpoint_every_steps": 5,
        "eval_every_steps": 5, "max_restarts": 2, "register_artifact": False,
    })
    said: list[str] = []
    # Worker 0 exits at step 8 of the first attempt; steps are paced so the run outlives
    # the scrapes below.
    env = {STEP_DELAY_ENV: "0.05", FAULT_ENV: json.dumps({"rank": 0, "step": 8, "attempt": 0})}
    engine = LocalEngine(tmp_path / "home", env=env, progress=False, echo=said.append,
                         metrics_port=0)
    results: list[TrainResult | BaseException] = []

    def run() -> None:
        try:
            results.append(engine.run(job))
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    url, seen = None, {}
    while time.monotonic() < deadline and not results:
        found = [m for line in said for m in re.findall(r"http://127\.0\.0\.1:\d+/metrics", line)]
        url = found[0] if found else None
        if url is not None:
            seen = _scrape(url) or seen
            if seen.get("tailguard_train_restarts_total") == 1 and seen.get(
                    "tailguard_train_step_seconds_count", 0) > 8:
                break  # a step of the second attempt logged after the restart
        time.sleep(0.1)
    thread.join(180)
    assert results and isinstance(results[0], TrainResult), results
    result = results[0]
    assert result.succeeded and result.restarts == 1, result.message
    assert url is not None, said
    missing = [n for n in NAMES if not any(k.startswith(n) for k in seen)]
    assert not missing, (missing, seen)
    assert seen["tailguard_train_restarts_total"] == 1
    assert seen["tailguard_train_world_size"] == 1
    assert seen["tailguard_train_loss"] > 0 and seen["tailguard_train_samples_per_second"] > 0
    assert 0 <= seen["tailguard_train_data_wait_share"] <= 1
    assert 0 <= seen["tailguard_train_eval_metric[accuracy]"] <= 1
    assert seen["tailguard_train_checkpoint_seconds_count"] >= 1
    with pytest.raises(httpx.HTTPError):  # the endpoint goes with the run
        httpx.get(url, timeout=2)


