"""Ask the Linux scheduler for a short time slice: the latency-sensitive processes' side.

Since Linux 6.12 the fair scheduler (EEVDF) takes a per-task slice request
(``sched_attr.sched_runtime`` for ``SCHED_OTHER``, 0.1-100 ms; the default is 0.7-3 ms by
core count). A waking task with a shorter slice than the running one preempts it at once
(``PREEMPT_SHORT``) instead of waiting for the running task's slice to end. The gateway and the
load generator are mostly asleep and wake for a few hundred microseconds per request; the
replicas next to them run long, CPU-bound batches. A short slice for the first lets a 429 go
out without waiting out a batch's slice, at a cost the replicas barely see.

Best effort and without privilege: on another OS, an older kernel (which ignores the field) or
an architecture whose syscall number is not known here, nothing changes. Python's ``os`` has no
``sched_setattr``, hence ``ctypes``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

__all__ = ["LATENCY_SLICE_NS", "request_default_slice", "request_short_slice", "slice_ns",
           "threads"]

LATENCY_SLICE_NS = 100_000  # the kernel's minimum: 0.1 ms

_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes)
_SCHED_OTHER = 0


def _syscalls() -> tuple[int, int] | None:
    if platform.system() != "Linux":
        return None
    return _SYSCALLS.get(platform.machine())


def threads() -> list[int]:
    """This process's thread ids (Linux); ``[0]``, the calling thread, elsewhere."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def request_short_slice(ns: int = LATENCY_SLICE_NS) -> bool:
    """Request a ``ns`` slice (0: the default) for every thread of this process (threads and
    children started later inherit it); keeps each thread's niceness. True when the kernel
    accepted it for all."""
    numbers = _syscalls()
    if numbers is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    done = True
    for tid in threads():
        try:
            nice = os.getpriority(os.PRIO_PROCESS, tid)
        except ProcessLookupError:  # a thread that just ended
            continue
        if os.sched_getscheduler(tid) != _SCHED_OTHER:
            done = False
            continue
        attr = ctypes.create_string_buffer(_ATTR.pack(_ATTR.size, _SCHED_OTHER, 0, nice, 0,
                                                      ns, 0, 0, 0, 0))
        if libc.syscall(numbers[0], tid, attr, 0) != 0:
            done = False
    return done


def request_default_slice() -> bool:
    """Back to the kernel's default slice, for every thread (a child inherits its parent's
    request: the gateway's replicas must not run their batches with it)."""
    return request_short_slice(0)


def slice_ns(tid: int = 0) -> int | None:
    """The slice a thread runs with (its request, or the default), None where unknown."""
    numbers = _syscalls()
    if numbers is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(numbers[1], tid, attr, _ATTR.size, 0) != 0:
        return None
    return int(_ATTR.unpack(attr.raw)[5])
