"""The load generator (``tailguard load``): open and closed loops, tenant mixes, reports.

In-process use::

    from tailguard.load import LoadSpec, run_load, run_load_recording, timeline

    result = run_load(LoadSpec("http://127.0.0.1:8000", model="echo", rate_rps=1000,
                               duration_s=10))
    print(result.p99_ms, result.rps, result.fell_behind)
    result, rec = run_load_recording(LoadSpec(url, model="echo",
                                              arrival="gamma:rate=500,cv=3", slo_ms=50))
    per_second = timeline(rec, slo_ms=50)
"""

from tailguard.load.payloads import PayloadError
from tailguard.load.report import LoadResult, Recording, format_text, summarize
from tailguard.load.runner import (
    record_load,
    run_load,
    run_load_async,
    run_load_recording,
    run_load_recording_async,
)
from tailguard.load.spec import LoadProgress, LoadSpec, arrival_offsets
from tailguard.load.stats import GroupStats
from tailguard.load.tenants import Tenant, TenantMix, read_tenants
from tailguard.load.timeline import Timeline, timeline

__all__ = [
    "GroupStats", "LoadProgress", "LoadResult", "LoadSpec", "PayloadError", "Recording",
    "Tenant", "TenantMix", "Timeline", "arrival_offsets", "format_text", "read_tenants",
    "record_load", "run_load", "run_load_async", "run_load_recording",
    "run_load_recording_async", "summarize", "timeline",
]
