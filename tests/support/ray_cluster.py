"""A real multi-node Ray cluster on this machine, as Ray's own tests build one.

``ray.cluster_utils.Cluster``: a head with no CPUs (nothing runs there but the GCS) and worker
nodes, each its own raylet. ``remove_node(node, allow_graceful=False)`` SIGKILLs a node's
processes: a node crash. The GCS health checks are shortened so a dead node is declared dead
in about a second (Ray's defaults take ~14 s here), but the gateway must not depend on it: its
in-flight calls fail within ~1.5 s either way.
"""

from __future__ import annotations

from typing import Any

FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


class RayTestCluster:
    """Head (``num_cpus=0``) plus ``nodes`` worker nodes of ``cpus_per_node`` CPUs."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 2,
                 system_config: dict[str, Any] | None = None) -> None:
        from ray.cluster_utils import Cluster

        self.cpus_per_node = cpus_per_node
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "_system_config": system_config or FAST_HEALTH_CHECKS,
            "include_dashboard": False})
        self.workers: list[Any] = []
        for _ in range(nodes):
            self.add_node()
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self) -> Any:
        node = self.cluster.add_node(num_cpus=self.cpus_per_node)
        self.workers.append(node)
        return node

    def node(self, node_id: str) -> Any:
        return next(n for n in self.workers if n.node_id == node_id)

    def kill_node(self, node_id: str) -> None:
        """SIGKILL every process of the node (raylet, object store, workers)."""
        node = self.node(node_id)
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def replace_node(self, node_id: str) -> Any:
        """Kill a node and add a fresh one, so the cluster keeps its shape for later tests."""
        self.kill_node(node_id)
        node = self.add_node()
        self.cluster.wait_for_nodes()
        return node

    def shutdown(self) -> None:
        self.cluster.shutdown()

