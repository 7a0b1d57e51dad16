"""Live metrics of one deployment, recorded on the request path, read by the controller.

The deployment calls ``arrival``, ``completed`` and ``batch`` (cheap appends); the controller,
off the request path, turns the last window into a :class:`MetricsSnapshot`.
"""

from __future__ import annotations


class LiveRecorder:
    """Event sink of one deployment (placeholder: the controller issue fills it in)."""

    def arrival(self, now: float, rows: int) -> None:
        """A request of ``rows`` rows was admitted at ``now`` (loop clock, seconds)."""

    def completed(self, now: float, latency_s: float, ok: bool) -> None:
        """A request finished at ``now`` after ``latency_s`` in the deployment."""

    def batch(self, now: float, rows: int, service_s: float) -> None:
        """A replica finished a batch of ``rows`` rows that took ``service_s``."""
