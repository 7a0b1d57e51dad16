"""The short scheduler slice the gateway and the load generator ask for (Linux >= 6.12)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tailguard.sched import LATENCY_SLICE_NS, slice_ns

_PROBE = """
import threading
from tailguard.sched import request_default_slice, request_short_slice, slice_ns
request_default_slice()  # a child inherits its parent's request: start from the default
before = slice_ns()
ok = request_short_slice()
later = []
t = threading.Thread(target=lambda: later.append(slice_ns()))
t.start(); t.join()
print(before, ok, slice_ns(), later[0])
"""


def test_a_process_gets_the_short_slice_and_its_new_threads_inherit_it() -> None:
    mine = slice_ns()
    if not mine:  # not Linux, an unknown architecture, or a kernel without slices
        pytest.skip("no per-task scheduler slice on this platform")
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                         text=True).stdout.split()
    before, ok, after, thread = int(out[0]), out[1] == "True", int(out[2]), int(out[3])
    assert before > LATENCY_SLICE_NS  # the kernel's default
    assert ok and after == LATENCY_SLICE_NS and thread == LATENCY_SLICE_NS
    assert slice_ns() == mine  # this process was left alone
