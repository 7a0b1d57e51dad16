"""The live page in a real browser: Debian's chromium driven by Playwright, against a real
gateway with two tenants. It loads, its charts draw, its numbers move under load, and each
tenant sees only its own series. The screenshot lands in the test's tmp dir (path printed).

chromium comes from ``scripts/install-chromium.sh`` (``make test`` runs it when missing);
Playwright only drives it (``executable_path``): it never downloads a browser. Under CI
(``CI=true``) a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ServerProcess, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KEY_A, KEY_B, ADMIN = "key-alpha-0123456789", "key-bravo-0123456789", "key-admin-0123456789"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
CONFIG = {
    "admin_api_keys": [ADMIN],
    "tenants": [
        {"id": "alpha", "api_keys": [KEY_A], "deployments": ["a-model"]},
        {"id": "bravo", "api_keys": [KEY_B], "deployments": ["b-model"]},
    ],
    "deployments": [
        {"name": name, "model": "tailguard.models.sleep:Sleep", "max_wait_ms": 2,
         "p99_ms": 100, "options": {"sleep_ms": 3}}
        for name in ("a-model", "b-model")],
}


def _browser_or_skip() -> Any:
    """Playwright's sync API, or a skip off CI / a failure under CI when it cannot run."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} missing: run scripts/install-chromium.sh"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright missing: pip install -e '.[dev]'"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(CONFIG, tmp_path_factory.mktemp("dashboard"))
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(server: ServerProcess) -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class _Load:
    """Requests in a loop from a thread, until stopped: the page must see them."""

    def __init__(self, server: ServerProcess, model: str, key: str) -> None:
        self._stop = threading.Event()
        self.sent = 0

        def run() -> None:
            with httpx.Client(base_url=server.url, timeout=10,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                while not self._stop.is_set():
                    client.post(f"/v2/models/{model}/infer", json=BODY).raise_for_status()
                    self.sent += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _tile(page: Any, panel: str, field: str) -> str:
    return str(page.locator(f'.v[data-panel="{panel}"][data-field="{field}"]').inner_text())


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "–": no value yet
        return None


def _open(browser: Any, server: ServerProcess, key: str | None) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server.url + "/dashboard" + (f"#key={key}" if key else ""))
    return page


def test_data_endpoint_is_scoped_like_metrics(server: ServerProcess) -> None:
    assert server.get("/v1/dashboard/data").status_code == 401
    assert server.get("/dashboard").status_code == 200  # the shell holds no data
    assert server.get("/dashboard/static/nope.js").status_code == 404
    alpha = server.get("/v1/dashboard/data", headers={"Authorization": f"Bearer {KEY_A}"}).json()
    assert [d["name"] for d in alpha["deployments"]] == ["a-model"] and alpha["scope"] == "alpha"
    admin = server.get("/v1/dashboard/data", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [d["name"] for d in admin["deployments"]] == ["a-model", "b-model"]


def test_admin_page_draws_charts_and_numbers_move_under_load(
        server: ServerProcess, browser: Any, tmp_path: Path) -> None:
    page = _open(browser, server, ADMIN)
    panel = "deployment:a-model"
    # 2 deployments x 5 charts, drawn on canvases that have a size.
    page.wait_for_function("window.tailguardCharts.length >= 10", timeout=30_000)
    sizes = page.eval_on_selector_all(
        "canvas", "cs => cs.map(c => [c.width, c.height])")
    assert len(sizes) >= 10 and all(w > 0 and h > 0 for w, h in sizes)
    assert _tile(page, panel, "replicas_ready") == "1"
    assert _tile(page, panel, "replicas_desired") == "1"

    load = _Load(server, "a-model", KEY_A)
    try:
        seen: set[str] = set()

        def moving() -> bool:
            rate = _number(_tile(page, panel, "requests_per_s"))
            if rate is not None and rate > 0:
                seen.add(_tile(page, panel, "requests_per_s"))
            return len(seen) >= 2 and _number(_tile(page, panel, "p99_s")) is not None

        # Under load the rate appears, then changes from one poll to the next.
        wait_for(moving, 60, "the request rate to appear and move on the page")
        wait_for(lambda: page.locator('[data-panel="tenant:alpha/a-model"]').count() > 0,
                 30, "alpha's tenant panel")
        p99_ms = _number(_tile(page, panel, "p99_s"))
        assert p99_ms is not None and 3 <= p99_ms < 10_000  # the model sleeps 3 ms
        assert _number(_tile(page, panel, "batch_rows_mean")) is not None
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"dashboard screenshot: {shot}")
    finally:
        load.stop()
    assert load.sent > 0
    page.close()


def test_tenant_page_shows_only_its_own_series(server: ServerProcess, browser: Any) -> None:
    loads = [_Load(server, "a-model", KEY_A), _Load(server, "b-model", KEY_B)]
    try:
        page = _open(browser, server, KEY_B)
        wait_for(lambda: _number(_tile(page, "tenant:bravo/b-model", "requests_per_s")) or False,
                 60, "bravo's own request rate on its page")
        panels = page.eval_on_selector_all("section[data-panel]",
                                           "ss => ss.map(s => s.dataset.panel)")
        assert sorted(panels) == ["deployment:b-model", "tenant:bravo/b-model"]
        text = page.inner_text("body")
        assert "alpha" not in text and "a-model" not in text
        assert page.locator("#scope").inner_text() == "tenant bravo"
        page.close()
    finally:
        for load in loads:
            load.stop()


def test_page_without_a_key_asks_for_one(server: ServerProcess, browser: Any) -> None:
    page = _open(browser, server, None)
    page.wait_for_selector("#login", state="visible", timeout=30_000)
    assert "missing API key" in page.locator("#status").inner_text()
    page.fill("#key", KEY_A)
    page.click("#login button")
    page.wait_for_selector('section[data-panel="deployment:a-model"]', timeout=30_000)
    assert page.locator("section[data-panel]").count() >= 1
    page.close()
