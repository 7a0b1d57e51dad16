"""Worker heartbeats: the mtime of a per-rank file, touched by the training loop itself.

Beating from the loop (not a free-running thread) means a worker that hangs — stopped,
deadlocked in a collective, stuck in I/O — goes silent, and the engine notices within
``heartbeat_timeout_s`` instead of waiting for a 30-minute collective timeout. Phases known to
be long and collective-free on this rank's side (loading a model, writing a checkpoint) run
under :meth:`Heartbeat.keepalive`, which beats from a thread meanwhile.

A worker also exits when its engine is gone (parent PID changed), so a killed engine never
leaves workers writing checkpoints behind a later ``--resume``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ORPHAN_EXIT_CODE = 75


class Heartbeat:
    def __init__(self, path: Path | None, *, min_interval_s: float = 0.05) -> None:
        self.path = path
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._parent = os.getppid()
        self._lock = threading.Lock()
        self.beat(force=True)

    def beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        if os.getppid() != self._parent:
            os._exit(ORPHAN_EXIT_CODE)  # the engine died; nobody supervises this group
        self._last = now
        if self.path is None:
            return
        with self._lock:
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.touch()

    @contextmanager
    def keepalive(self, interval_s: float = 0.5) -> Iterator[None]:
        stop = threading.Event()

        def _run() -> None:
            while not stop.wait(interval_s):
                self.beat(force=True)

        thread = threading.Thread(target=_run, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.beat(force=True)
