"""What the server said for each kind of HTTP error a run met: one sample body per status.

The load client never reads bodies (it is built to cost as little Python per request as
possible), so a run only knows *that* requests failed with, say, 400. After the run, the
first request that got each error status is sent once more on a fresh connection, and its
answer kept (shortened): deterministic errors (400 bad input, 401, 404, 413) come back as
they were; an overload answer (429, 503) may not, and the sample then says so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tailguard.load.client import Target, exchange

MAX_SAMPLE_CHARS = 300


def _shorten(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    if len(text) > MAX_SAMPLE_CHARS:
        text = text[: MAX_SAMPLE_CHARS - 3] + "..."
    return text or "(empty body)"


async def error_samples(code: np.ndarray, request_bytes: Callable[[int], bytes],
                        target: Target, timeout_s: float) -> dict[int, str]:
    """``{status: sample}`` for each HTTP error status (>= 400) in ``code``."""
    samples: dict[int, str] = {}
    statuses = np.unique(code[code >= 400])
    for status in (int(s) for s in statuses):
        first = int(np.argmax(code == status))
        try:
            got, body = await exchange(target, request_bytes(first), timeout_s)
        except (OSError, TimeoutError) as exc:
            samples[status] = f"(no sample: resending the request failed: {exc})"
            continue
        if got == status:
            samples[status] = _shorten(body)
        else:
            samples[status] = (f"(not reproduced: the same request sent after the run got "
                               f"{got}: {_shorten(body)})")
    return samples
