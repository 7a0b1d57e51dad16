"""Entry points of the load generator: run a :class:`LoadSpec`, get a summary or the raw record.

``run_load(spec) -> LoadResult`` is what the CLI and most callers want. Benchmarks and tools
that plot over time use ``run_load_recording(spec) -> (LoadResult, Recording)``: the
per-request arrays (intended, sent and done times, status, tenant index) and, with
``scrape_metrics``, the server's replicas and queue depth; :func:`timeline` buckets them per
second. Each has an ``_async`` twin that runs on the caller's event loop.

The engines themselves are in :mod:`tailguard.load.engines`.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from tailguard.load.client import Target, build_request
from tailguard.load.engines import ClosedLoop, OpenLoop
from tailguard.load.metrics import MetricsScraper
from tailguard.load.payloads import resolve_bodies, route
from tailguard.load.report import LoadResult, Recording, summarize
from tailguard.load.samples import error_samples
from tailguard.load.spec import LoadSpec, ProgressCallback

_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a run is measured; nested and concurrent runs share it.

    A collection pause mid-run would show up as a latency spike, so the collector is off for
    the run. It is *not* run first (``gc.collect()``): a full collection runs the finalisers
    of whatever garbage the rest of the process left behind, and those can block for
    seconds (a leaked ``DataLoader`` iterator joins each worker with a 5 s timeout), all
    inside the measured run. ``gc.freeze()`` instead parks every existing object in the
    permanent generation, so even a collection someone forces during the run only scans
    what the run allocated; the objects return to the oldest generation afterwards.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
            gc.freeze()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.unfreeze()
                if _gc_was_enabled:
                    gc.enable()


async def record_load(spec: LoadSpec, progress: ProgressCallback | None = None) -> Recording:
    """Run ``spec`` on the running event loop and return its raw :class:`Recording`."""
    with gc_paused():
        target = Target.parse(spec.url)
        bodies = await resolve_bodies(spec, target)
        path = route(spec.protocol, spec.model)
        requests = [build_request(target, "POST", path, body, spec.headers()) for body in bodies]
        per_tenant = None
        if spec.tenants is not None:
            per_tenant = [[build_request(target, "POST", path, body, t.headers())
                           for body in bodies] for t in spec.tenants.tenants]
        engine_type = ClosedLoop if spec.mode == "closed" else OpenLoop
        engine = engine_type(spec, target, requests, progress, per_tenant)
        scraper = None
        if spec.scrape_metrics:
            scraper = MetricsScraper(target, spec.headers(), spec.metrics_interval_s,
                                     min(spec.timeout_s, 2.0))
            scraper.start()
        try:
            recording = await engine.run()
        finally:
            server = await scraper.stop() if scraper is not None else None
        # After the measured run: what the server said for each kind of error.
        samples = await error_samples(recording.code, engine.request_bytes, target,
                                      min(spec.timeout_s, 5.0))
    recording = replace(recording, error_samples=samples)
    return recording if server is None else replace(recording, server=server)


async def run_load_recording_async(
    spec: LoadSpec, progress: ProgressCallback | None = None
) -> tuple[LoadResult, Recording]:
    """Run ``spec`` on the running event loop: its summary and its raw recording."""
    recording = await record_load(spec, progress)
    return summarize(recording, spec.slo_ms), recording


async def run_load_async(
    spec: LoadSpec, progress: ProgressCallback | None = None
) -> LoadResult:
    """Run ``spec`` on the running event loop and summarise it (see :func:`run_load`)."""
    result, _ = await run_load_recording_async(spec, progress)
    return result


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed (much cheaper per request), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_load_recording(
    spec: LoadSpec, progress: ProgressCallback | None = None
) -> tuple[LoadResult, Recording]:
    """Like :func:`run_load`, with the per-request :class:`Recording` as well::

        result, rec = run_load_recording(LoadSpec(url, model="echo", rate_rps=500,
                                                  duration_s=10))
        per_second = timeline(rec, slo_ms=50)
    """
    # Paused before the loop exists: an automatic collection triggered by setting it up would
    # run the finalisers of other code's garbage inside this call.
    with gc_paused(), asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run_load_recording_async(spec, progress))


def run_load(spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
    """Run ``spec`` on a fresh uvloop event loop, block until it ends, return its summary::

        result = run_load(LoadSpec("http://127.0.0.1:8000", model="echo", concurrency=64,
                                   duration_s=5))
        print(result.p99_ms, result.rps)
    """
    result, _ = run_load_recording(spec, progress)
    return result
