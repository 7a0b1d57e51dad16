"""MiniLM classifier fine-tuning on a Ray cluster: scaling, time-to-accuracy, start-up.

A real Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs, two
1-CPU worker nodes, each its own raylet). The job is ``examples/minilm_classifier`` (MiniLM
encoder + 4-way head, data prepared and ingested as its ``run.sh`` does), one torch thread
per worker. Figures, all from this run:

1. scaling: samples/s with 2 workers on 2 nodes against 1 worker (Ray engine both),
   efficiency = sps(2) / (2 * sps(1)) (target >= 0.85);
2. time-to-accuracy of the same job (2 workers) on Ray against the local engine (ratio,
   target <= 1.15);
3. start-up: seconds from the call to the first finished training step, the Ray engine
   against a plain Ray Train ``TorchTrainer`` running one step of the same model and batch
   (Ray Train's controller, worker group and process-group set-up).

    python benchmarks/ray_train_minilm.py [--steps 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tailguard.train import LocalEngine, TrainJob, parse_job, read_events

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "minilm_classifier"


def prepare(root: Path) -> dict[str, str]:
    py = sys.executable
    subprocess.run([py, str(EXAMPLE / "prepare.py"), "--out", str(root)], check=True,
                   capture_output=True)
    for split in ("train", "test"):
        subprocess.run([py, "-m", "tailguard", "data", "ingest", str(root / f"{split}.jsonl"),
                        "--out", str(root / split)], check=True, capture_output=True)
    return {"train": str(root / "train"), "eval": str(root / "test")}


def job(data: dict[str, str], **over: Any) -> TrainJob:
    spec = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    spec["data"].update(data)
    spec.update({"threads_per_worker": 1, "register_artifact": False, "log_every_steps": 1})
    spec.update(over)
    return parse_job(spec)


def samples_per_s(run_dir: Path) -> float:
    """Median over steps past the first two (cold), from the trainer's own step events."""
    rates = [e["samples_per_s"] for e in read_events(run_dir / "metrics.jsonl")
             if e["event"] == "step" and e["step"] > 2]
    return float(statistics.median(rates))


def first_step_s(run_dir: Path, called: float) -> float:
    first = next(e for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "step")
    return float(first["t"]) - called


def ray_train_startup(data: dict[str, str], storage: Path) -> float:
    """A plain Ray Train TorchTrainer: 2 workers build the same model and run one step."""
    import ray.train
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    stamp = storage / "first_step"

    def loop(config: dict[str, Any]) -> None:
        import torch

        from tailguard.train.builtin_models import resolve_builder

        torch.set_num_threads(1)
        model = ray.train.torch.prepare_model(
            resolve_builder("minilm_classifier")(num_labels=4, max_length=24))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        texts = [f"a sentence about topic {i}" for i in range(8)]
        loss = torch.nn.functional.cross_entropy(model(texts), torch.zeros(8, dtype=torch.long))
        loss.backward()
        opt.step()
        if ray.train.get_context().get_world_rank() == 0:
            Path(config["stamp"]).write_text(str(time.time()))

    called = time.time()
    TorchTrainer(loop, train_loop_config={"stamp": str(stamp)},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(storage_path=str(storage), name="startup")).fit()
    return float(stamp.read_text()) - called


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="per-worker batch for the scaling runs (default: the example's 8)")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    from tailguard.train.ray_engine import RayEngine

    tmp = Path(tempfile.mkdtemp(prefix="tailguard-ray-train-"))
    data = prepare(tmp / "data")
    quiet = {"progress": False, "echo": lambda _m: None}
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    out: dict[str, Any] = {}
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        engine = RayEngine(tmp / "ray", address=cluster.address, **quiet)
        no_eval: dict[str, Any] = {"max_steps": args.steps, "eval_every_steps": None,
                                   "target": None}
        if args.batch_size:
            no_eval["batch_size"] = args.batch_size
        called = time.time()
        two = engine.run(job(data, world_size=2, **no_eval))
        out["ray_first_step_s"] = round(first_step_s(two.run_dir, called), 2)
        one = engine.run(job(data, world_size=1, **no_eval))
        sps1, sps2 = samples_per_s(one.run_dir), samples_per_s(two.run_dir)
        out.update(sps_1_worker=round(sps1, 2), sps_2_workers=round(sps2, 2),
                   scaling_efficiency=round(sps2 / (2 * sps1), 3))
        print(f"samples/s: 1 worker {sps1:.1f}, 2 workers on 2 nodes {sps2:.1f}: efficiency "
              f"{out['scaling_efficiency']} (target >= 0.85)", file=sys.stderr)
        on_ray = engine.run(job(data))
        local = LocalEngine(tmp / "local", **quiet).run(job(data))
        if on_ray.tta_s and local.tta_s:
            out.update(ray_tta_s=round(on_ray.tta_s, 2), local_tta_s=round(local.tta_s, 2),
                       tta_ratio=round(on_ray.tta_s / local.tta_s, 3))
        out["accuracy"] = {"ray": on_ray.metrics.get("accuracy"),
                           "local": local.metrics.get("accuracy")}
        print(f"time-to-accuracy: Ray {out.get('ray_tta_s')} s, local {out.get('local_tta_s')}"
              f" s: ratio {out.get('tta_ratio')} (target <= 1.15)", file=sys.stderr)
        out["ray_train_first_step_s"] = round(ray_train_startup(data, tmp / "raytrain"), 2)
        out["startup_ratio"] = round(out["ray_first_step_s"] / out["ray_train_first_step_s"], 3)
        print(f"start-up to the first step: tailguard on Ray {out['ray_first_step_s']} s, "
              f"Ray Train TorchTrainer {out['ray_train_first_step_s']} s", file=sys.stderr)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
