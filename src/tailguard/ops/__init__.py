"""Operations tools: the load generator (``tailguard load``); chaos, profile and plan to come.

In-process use::

    from tailguard.ops import LoadSpec, run_load

    result = run_load(LoadSpec("http://127.0.0.1:8000", model="echo", rate_rps=1000,
                               duration_s=10))
    print(result.p99_ms, result.rps, result.fell_behind)
"""

from tailguard.ops.load_report import LoadResult, format_text, summarize
from tailguard.ops.load_runner import run_load, run_load_async
from tailguard.ops.load_spec import LoadProgress, LoadSpec, arrival_offsets
from tailguard.ops.payloads import PayloadError

__all__ = [
    "LoadProgress",
    "LoadResult",
    "LoadSpec",
    "PayloadError",
    "arrival_offsets",
    "format_text",
    "run_load",
    "run_load_async",
    "summarize",
]
