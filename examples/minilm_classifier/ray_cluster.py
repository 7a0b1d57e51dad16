"""A multi-node Ray cluster on this machine for trying the example: a head with no CPUs and
two 1-CPU worker nodes, each its own raylet (``ray.cluster_utils.Cluster``, as Ray's own tests
build one). Prints the address, then runs until Ctrl-C or SIGTERM and shuts the cluster down.

    .venv/bin/python examples/minilm_classifier/ray_cluster.py &
    bash examples/minilm_classifier/run.sh --ray "$(cat .tailguard/ray-address)"
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = Path(".tailguard/ray-address")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(cluster.address)
        print(f"Ray cluster at {cluster.address} (written to {out}); Ctrl-C stops it",
              flush=True)
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
