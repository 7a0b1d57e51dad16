"""Worker heartbeats: the mtime of a per-rank file, touched by the training loop itself.

Beating from the loop (not a free-running thread) means a worker that hangs — stopped,
deadlocked in a collective, stuck in I/O — goes silent, and the engine notices within
``heartbeat_timeout_s`` instead of waiting for a 30-minute collective timeout. Phases known to
be long and collective-free on this rank's side (loading a model, writing a checkpoint) run
under :meth:`Heartbeat.keepalive`, which beats from a thread meanwhile; so does start-up, up
to the end of the first training step (importing torch, joining the group, loading a model,
opening the data and the first, slower, step), which ``startup_timeout_s`` bounds instead.

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
        self._touch_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._depth = 0
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
        with self._touch_lock:
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.touch()

    def start_keepalive(self, interval_s: float = 0.5) -> None:
        """Beat from a thread until :meth:`stop_keepalive` (nested calls are counted)."""
        with self._lock:
            self._depth += 1
            if self._thread is not None:
                return
            self._stop = threading.Event()
            stop = self._stop

        def _run() -> None:
            while not stop.wait(interval_s):
                self.beat(force=True)

        thread = threading.Thread(target=_run, name="heartbeat", daemon=True)
        with self._lock:
            self._thread = thread
        thread.start()

    def stop_keepalive(self, *, all_levels: bool = False) -> None:
        with self._lock:
            if self._thread is None:
                return
            self._depth = 0 if all_levels else self._depth - 1
            if self._depth > 0:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
        thread.join()
        self.beat(force=True)

    @contextmanager
    def keepalive(self, interval_s: float = 0.5) -> Iterator[None]:
        self.start_keepalive(interval_s)
        try:
            yield
        finally:
            self.stop_keepalive()
