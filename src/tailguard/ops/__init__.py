"""Operations tools: the load generator (``tailguard load``); chaos, profile and plan.

In-process use::

    from tailguard.ops import LoadSpec, run_load, run_load_recording, timeline

    result = run_load(LoadSpec("http://127.0.0.1:8000", model="echo", rate_rps=1000,
                               duration_s=10))
    print(result.p99_ms, result.rps, result.fell_behind)
    result, rec = run_load_recording(LoadSpec(url, model="echo",
                                              arrival="gamma:rate=500,cv=3", slo_ms=50))
    per_second = timeline(rec, slo_ms=50)
"""

from tailguard.ops.load_report import LoadResult, Recording, format_text, summarize
from tailguard.ops.load_runner import (
    record_load,
    run_load,
    run_load_async,
    run_load_recording,
    run_load_recording_async,
)
from tailguard.ops.load_spec import LoadProgress, LoadSpec, arrival_offsets
from tailguard.ops.load_stats import GroupStats
from tailguard.ops.load_tenants import Tenant, TenantMix, read_tenants
from tailguard.ops.load_timeline import Timeline, timeline
from tailguard.ops.payloads import PayloadError

__all__ = [
    "GroupStats", "LoadProgress", "LoadResult", "LoadSpec", "PayloadError", "Recording",
    "Tenant", "TenantMix", "Timeline", "arrival_offsets", "format_text", "read_tenants",
    "record_load", "run_load", "run_load_async", "run_load_recording",
    "run_load_recording_async", "summarize", "timeline",
]
