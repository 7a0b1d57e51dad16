"""What each parallel layout costs and saves: per-rank memory and step time against dp=1.

Every layout trains the same transformer (``transformer_classifier``) on the same generated
data with the same global batch, through the real engine (worker processes, gloo on CPU), in
this run on this machine. Per layout:

- **memory**: the largest rank's parameter + gradient + optimiser bytes, measured by the
  trainer after its first step from the local shards (the ``memory`` event), and that as a
  fraction of dp=1's (what splitting buys);
- **step time**: the median wall time between consecutive step events after ``--warmup``
  steps, and its ratio to dp=1 (what the communication costs).

Every worker runs one torch thread (``--threads``), so a 2-rank layout uses two cores where
dp=1 uses one: on this CPU host the step-time ratio is the split's compute saving minus its
communication (gloo over loopback), not a GPU figure. Layouts needing more ranks than cores
oversubscribe them; their step times then measure contention and are reported but flagged.

    .venv/bin/python benchmarks/model_parallel.py [--steps 30] [--dim 128] [--layers 4]
    .venv/bin/python benchmarks/model_parallel.py --device cuda --dim 1024 --layers 8
        # NCCL, one GPU per rank: the layouts this machine's GPUs allow (tp=2 needs two)

The last line is one JSON object: ``layouts`` (name -> ranks, max_rank_bytes, memory_ratio,
step_s, step_ratio, oversubscribed) and ``baseline`` (dp=1's figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tailguard.data import ingest
from tailguard.train import LocalEngine, parse_job, read_events

FEATURES = 16
LAYOUTS: dict[str, dict[str, Any]] = {
    "dp1": {"parallel": "ddp", "world_size": 1},
    "dp2 (ddp)": {"parallel": "ddp", "world_size": 2},
    "dp2 fsdp": {"parallel": "fsdp", "world_size": 2},
    "tp2": {"parallel": {"dp": 1, "tp": 2}, "world_size": 2},
    "pp2 1f1b": {"parallel": {"dp": 1, "pp": 2, "schedule": "1f1b", "microbatches": 4},
                 "world_size": 2},
    "pp2 gpipe": {"parallel": {"dp": 1, "pp": 2, "schedule": "gpipe", "microbatches": 4},
                  "world_size": 2},
    "dp2 tp2 fsdp": {"parallel": {"dp": 2, "tp": 2, "fsdp": True}, "world_size": 4},
}


def make_data(root: Path, rows: int = 4096, seed: int = 0) -> Path:
    """Features from N(0, 1), labels from a random linear teacher (10 classes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    y = (x @ rng.standard_normal((FEATURES, 10))).argmax(axis=1)
    csv = root / "train.csv"
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "label"])
    lines = [",".join([*(f"{v:.5f}" for v in r), str(int(t))]) for r, t in zip(x, y, strict=True)]
    csv.write_text(header + "\n" + "\n".join(lines) + "\n")
    ingest([str(csv)], root / "train")
    return root / "train"


def run_layout(home: Path, data: Path, layout: dict[str, Any], args: argparse.Namespace
               ) -> dict[str, Any]:
    parallel = layout["parallel"]
    dp = parallel.get("dp", 1) if isinstance(parallel, dict) else layout["world_size"]
    job = parse_job({
        "name": "mp-bench",
        "model": {"builder": "transformer_classifier",
                  "kwargs": {"in_features": FEATURES, "out_features": 10, "dim": args.dim,
                             "heads": 4, "layers": args.layers, "mlp_ratio": 4}},
        "data": {"train": str(data), "features": ["f*"], "label": "label"},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "batch_size": args.global_batch // dp, "max_steps": args.steps,
        "checkpoint_every_steps": args.steps, "threads_per_worker": args.threads,
        "max_restarts": 0, "register_artifact": False, "heartbeat_timeout_s": 120,
        "device": args.device, **layout,
    })
    result = LocalEngine(home, progress=False, echo=lambda _m: None).run(job)
    if not result.succeeded:
        raise RuntimeError(f"{layout}: {result.message}")
    events = read_events(result.run_dir / "metrics.jsonl")
    times = [e["t"] for e in events if e["event"] == "step"]
    gaps = [b - a for a, b in zip(times[args.warmup:], times[args.warmup + 1:], strict=False)]
    (memory,) = [e for e in events if e["event"] == "memory"]
    per_rank = [r["param_bytes"] + r["grad_bytes"] + r["optim_bytes"] for r in memory["ranks"]]
    return {"ranks": job.world_size, "max_rank_bytes": max(per_rank),
            "param_bytes": max(r["param_bytes"] for r in memory["ranks"]),
            "step_s": statistics.median(gaps),
            "oversubscribed": args.device == "cpu"
                              and job.world_size * args.threads > (os.cpu_count() or 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="layout names (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: NCCL, one GPU per rank; layouts needing more are skipped")
    args = parser.parse_args()
    names = args.only or list(LAYOUTS)
    if args.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        names = [n for n in names if LAYOUTS[n]["world_size"] <= gpus]
    if "dp1" not in names:
        names.insert(0, "dp1")
    with tempfile.TemporaryDirectory(prefix="tailguard-mp-bench-") as tmp:
        root = Path(tmp)
        data = make_data(root)
        results = {name: run_layout(root / "home", data, LAYOUTS[name], args) for name in names}
    base = results["dp1"]
    for figures in results.values():
        figures["memory_ratio"] = round(figures["max_rank_bytes"] / base["max_rank_bytes"], 3)
        figures["step_ratio"] = round(figures["step_s"] / base["step_s"], 3)
    print(f"transformer dim {args.dim}, {args.layers} layers; global batch {args.global_batch}; "
          f"{args.threads} thread(s) per rank; {os.cpu_count()} cores", file=sys.stderr)
    print(f"{'layout':<14}{'ranks':>6}{'MiB/rank':>10}{'vs dp1':>8}{'ms/step':>10}{'vs dp1':>8}",
          file=sys.stderr)
    for name, f in results.items():
        flag = "  (ranks > cores: contended)" if f["oversubscribed"] else ""
        print(f"{name:<14}{f['ranks']:>6}{f['max_rank_bytes'] / 2**20:>10.2f}"
              f"{f['memory_ratio']:>8.2f}{f['step_s'] * 1e3:>10.1f}{f['step_ratio']:>8.2f}{flag}",
              file=sys.stderr)
        if name != "dp1":
            saved, cost = 1 - f["memory_ratio"], f["step_ratio"] - 1
            print(f"    {name}: per-rank state {saved:.0%} smaller than dp1's; a step "
                  f"{abs(cost):.0%} {'slower' if cost >= 0 else 'faster'}", file=sys.stderr)
    print(json.dumps({"benchmark": "model_parallel", "baseline": base, "layouts": results,
                      "args": vars(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
