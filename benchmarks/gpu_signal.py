"""Check the NVML signal on a real GPU: idle, then under a matmul loop in a child process.

Starts a child that keeps the first GPU busy with torch matmuls for ``--seconds``, samples
:class:`~tailguard.observe.gpu.GpuProbe` for the child's pid (the signal the autoscaler and
``/metrics`` use) and for a pid that holds no GPU (must be ``None``). Needs CUDA torch and
``nvidia-ml-py``; without a GPU it prints why and exits 0 with ``"gpu": false``.

    python benchmarks/gpu_signal.py --seconds 10

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from tailguard.observe.gpu import GpuProbe

_BURN = """
import sys, time, torch
x = torch.randn(8192, 8192, device="cuda")
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    x = (x @ x).clamp_(-1, 1)
torch.cuda.synchronize()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    probe = GpuProbe()
    out: dict[str, object] = {"gpu": probe.available}
    if not probe.available:
        print("no NVML GPU signal here (no driver, no GPU or no nvidia-ml-py)")
        print(json.dumps(out))
        return 0
    idle = probe.sample(None)
    out["idle_all_devices"] = None if idle is None else asdict(idle)
    child = subprocess.Popen([sys.executable, "-c", _BURN, str(args.seconds)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # "ready": the CUDA context exists
        samples = []
        deadline = time.monotonic() + args.seconds * 0.8
        while time.monotonic() < deadline:
            sample = probe.sample([child.pid])
            if sample is not None:
                samples.append((sample.utilization, sample.memory_fraction))
            time.sleep(0.5)
        out["busy_samples"] = len(samples)
        out["busy_utilization_max"] = max((u for u, _ in samples), default=None)
        out["busy_memory_fraction_max"] = max((m for _, m in samples), default=None)
        out["other_pid_signal"] = probe.sample([os.getpid()])  # holds no GPU context: None
    finally:
        child.kill()
        child.wait()
    ok = (out["busy_samples"] and (out["busy_utilization_max"] or 0) > 0.5
          and out["other_pid_signal"] is None)
    out["ok"] = bool(ok)
    print(json.dumps(out, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
