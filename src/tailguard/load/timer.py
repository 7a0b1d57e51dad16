"""A precise, cheap wake-up for the open loop: fire a callback at a ``perf_counter`` time.

The event loop's own timers have a resolution of one millisecond (libuv and epoll count in
ms), too coarse for send times that must be within a millisecond of their schedule at P99.
Busy-waiting with ``call_soon`` is precise but burns a whole core that the server under test
shares. On Linux, :class:`TimerFdWakeup` arms a ``timerfd`` on ``CLOCK_MONOTONIC`` (the clock
behind ``time.perf_counter``) at the absolute intended time and lets the event loop watch it
like a socket: nanosecond resolution, no spinning, one system call per wake-up. Elsewhere
:class:`LoopWakeup` sleeps on the loop timer until shortly before the time, then yields with
``call_soon`` until it comes.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
# Sleep on the loop's 1 ms timer only when the time is further than _SPIN_S away, waking
# _MARGIN_S early; nearer than that, yield with call_soon.
_SPIN_S = 0.002
_MARGIN_S = 0.0015


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class Wakeup:
    """Calls ``callback`` once at or just after each time given to :meth:`at`."""

    def at(self, when: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class LoopWakeup(Wakeup):
    """Portable: the loop's millisecond timer, then ``call_soon`` until the time comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._when = 0.0
        self._handle: asyncio.Handle | None = None

    def at(self, when: float) -> None:
        self._when = when
        self._schedule()

    def _schedule(self) -> None:
        wait = self._when - time.perf_counter()
        if wait > _SPIN_S:
            self._handle = self._loop.call_later(wait - _MARGIN_S, self._check)
        else:
            self._handle = self._loop.call_soon(self._check)

    def _check(self) -> None:
        if time.perf_counter() >= self._when:
            self._handle = None
            self._callback()
        else:
            self._schedule()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class TimerFdWakeup(Wakeup):
    """Linux: a ``timerfd`` armed at the absolute time, watched by the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd = fd
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._armed = False
        self._loop = loop
        self._callback = callback
        loop.add_reader(fd, self._fired)

    def at(self, when: float) -> None:
        seconds = int(when)
        self._spec.it_value.tv_sec = seconds
        # A zero it_value would disarm the timer; 1 ns stands for "now".
        self._spec.it_value.tv_nsec = max(1, int((when - seconds) * 1e9))
        self._set(_TFD_TIMER_ABSTIME)
        self._armed = True

    def _set(self, flags: int) -> None:
        if self._settime(self._fd, flags, self._spec_ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def _fired(self) -> None:
        # No read(): re-arming resets the expiry count, which saves a system call per wake-up;
        # when the callback does not re-arm, disarm, or the fd would stay readable.
        self._armed = False
        self._callback()
        if not self._armed and self._fd >= 0:
            self._spec.it_value.tv_sec = 0
            self._spec.it_value.tv_nsec = 0
            self._set(0)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def make_wakeup(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Wakeup:
    """The best wake-up this platform has: timerfd on Linux, the loop timer elsewhere."""
    clock = time.get_clock_info("perf_counter").implementation
    if sys.platform.startswith("linux") and "CLOCK_MONOTONIC" in clock:
        try:
            return TimerFdWakeup(loop, callback)
        except (OSError, AttributeError, NotImplementedError):
            pass
    return LoopWakeup(loop, callback)
