"""Models the tests serve as a changed version of a built-in one."""

from __future__ import annotations

from tailguard.models.echo import Echo


class EchoAgain(Echo):
    """Echo under another class path: the same signature, so swapping it in is a model change
    that callers cannot tell from their answers."""
