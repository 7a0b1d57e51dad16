"""Ray backend: each replica is a Ray actor on one of the cluster's nodes.

The gateway stays one process; only the replicas move. Batching, admission, tenants,
autoscaling and rolling restarts are the deployment runtime's, unchanged: this module only
implements :class:`~tailguard.serve.replicas.backend.ReplicaHandle` over an actor.

Placement: the backend picks the node itself (spread: the feasible node holding the fewest of
the deployment's replicas) and pins the actor there with a soft node affinity that spills when
the node is busy. Picking, rather than Ray's SPREAD, lets it skip a node it has just seen a
replica die on: the GCS declares a SIGKILLed node dead only after its health checks run out
(14 s with Ray's defaults, measured), and a replacement placed there meanwhile would wait.

A replica's death reaches the gateway three ways, whichever comes first:

1. its in-flight ``infer`` call fails (``ActorUnavailableError`` when the node's connection
   drops: 1.5 s after a node SIGKILL here, with Ray's defaults);
2. its ``park`` call, pending while it lives, fails the same way when no batch is in flight;
3. the GCS node table, polled while replicas live, stops listing its node (Ray's own health
   checks; the backstop).

An in-flight batch on a dead replica raises :class:`ReplicaDied`, which the batcher retries
once on another replica, exactly as with a local process that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from tailguard import raylink
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.backend import ReplicaDied, ReplicaSetupFailed
from tailguard.serve.replicas.local import REPLICA_ENV_DEFAULTS
from tailguard.serve.replicas.messages import BatchError, BatchResult, ErrorKind
from tailguard.tensors import Tensors

__all__ = ["RayBackend", "RayReplica"]

log = logging.getLogger("tailguard.serve")

NODE_POLL_S = 0.5  # how often the GCS node table is read while replicas live
SUSPECT_S = 30.0  # a node a replica just died on is avoided this long (unless it is the only one)

_actor_class: Any = None


def _remote_class() -> Any:
    global _actor_class
    if _actor_class is None:
        ray = raylink.require_ray()
        from tailguard.serve.replicas.ray_actor import ReplicaActor

        _actor_class = ray.remote(ReplicaActor)
    return _actor_class


def replica_resources(spec: DeploymentSpec) -> dict[str, float]:
    """What one replica asks Ray for: CPUs (the model's ``threads``, else 1), GPUs, custom."""
    cpus = spec.num_cpus if spec.num_cpus is not None else float(spec.options.get("threads", 1))
    need = {"CPU": cpus, "GPU": spec.num_gpus, **spec.resources}
    return {k: v for k, v in need.items() if v}


class RayBackend:
    """Replicas as Ray actors on the cluster at ``address`` (see :func:`raylink.connect`)."""

    def __init__(self, address: str | None = None, env: dict[str, str] | None = None) -> None:
        self.address = address
        self.env = dict(env or {})  # added to every actor's environment (the tracing spec)
        self._replicas: set[RayReplica] = set()
        self._suspects: dict[str, float] = {}  # node id -> loop time a replica died there
        self._watcher: asyncio.Task[None] | None = None

    def connect(self) -> None:
        raylink.connect(self.address)

    def create(self, spec: DeploymentSpec, index: int) -> RayReplica:
        return RayReplica(spec, index, self)

    # -- placement ------------------------------------------------------------------------
    def strategy(self, replica: RayReplica) -> Any:
        """The scheduling strategy for a new replica, counted on its node from now on (so
        replicas starting together spread too); raises :class:`ReplicaSetupFailed` when no
        node could ever hold it."""
        spec, name = replica.spec, replica.name
        need = replica_resources(spec)
        nodes = raylink.alive_nodes()
        feasible = [n for n in nodes if all(n.resources.get(k, 0) >= v for k, v in need.items())]
        if not feasible:
            have = "; ".join(f"{n.address}: {n.resources}" for n in nodes) or "no live node"
            raise ReplicaSetupFailed(f"{name}: no node of the Ray cluster has {need} "
                                     f"(set num_cpus/num_gpus/resources; nodes: {have})")
        if spec.placement == "pack":
            return "DEFAULT"
        now = asyncio.get_running_loop().time()
        trusted = [n for n in feasible if now - self._suspects.get(n.node_id, -SUSPECT_S)
                   >= SUSPECT_S] or feasible
        mine = Counter(r.node_id for r in self._replicas if r.spec.name == spec.name)
        ours = Counter(r.node_id for r in self._replicas)
        node = min(trusted, key=lambda n: (mine[n.node_id], ours[n.node_id], n.node_id))
        replica.node_id = node.node_id
        self.register(replica)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node.node_id, soft=True,
                                              _spill_on_unavailable=True)

    def suspect(self, node_id: str | None) -> None:
        if node_id:
            self._suspects[node_id] = asyncio.get_running_loop().time()

    # -- node watching --------------------------------------------------------------------
    def register(self, replica: RayReplica) -> None:
        self._replicas.add(replica)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_nodes(), name="ray-nodes")

    def unregister(self, replica: RayReplica) -> None:
        self._replicas.discard(replica)

    async def _watch_nodes(self) -> None:
        while self._replicas:
            try:
                alive = {n.node_id for n in await asyncio.to_thread(raylink.alive_nodes)}
            except Exception as exc:  # the GCS unreachable: the calls tell each replica
                log.warning("cannot read the Ray node table: %s", exc)
            else:
                for replica in list(self._replicas):
                    if replica.node_id is not None and replica.node_id not in alive:
                        replica.close(f"its node {replica.node_id[:12]} is dead (Ray GCS)")
            await asyncio.sleep(NODE_POLL_S)


class RayReplica:
    """One replica actor."""

    def __init__(self, spec: DeploymentSpec, index: int, backend: RayBackend) -> None:
        self.spec = spec
        self._name = f"{spec.name}-{index}"
        self._backend = backend
        self._actor: Any = None
        self._pid: int | None = None
        self.node_id: str | None = None
        self._closed: asyncio.Future[str] | None = None
        self._park: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def pid(self) -> int | None:
        return self._pid

    async def start(self) -> float:
        ray = raylink.require_ray()
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        try:
            await asyncio.to_thread(self._backend.connect)
        except raylink.RayUnavailable as exc:
            raise ReplicaSetupFailed(f"{self._name}: {exc}") from exc
        from tailguard.serve.replicas.ray_actor import ACTOR_LANES

        env = {**REPLICA_ENV_DEFAULTS, **self.spec.env, **self._backend.env,
               "TAILGUARD_REPLICA": self._name}
        need = replica_resources(self.spec)
        self._actor = _remote_class().options(
            num_cpus=need.pop("CPU", 0), num_gpus=need.pop("GPU", 0), resources=need or None,
            max_concurrency=ACTOR_LANES, max_restarts=0, max_task_retries=0,
            runtime_env={"env_vars": env},
            scheduling_strategy=self._backend.strategy(self),
        ).remote(self.spec.model_dump_json())
        timeout = self.spec.startup_timeout_s
        try:
            pid, node_id, setup_s = await asyncio.wait_for(
                asyncio.wrap_future(self._actor.setup.remote().future()), timeout)
        except TimeoutError:
            self.kill()
            raise ReplicaSetupFailed(
                f"{self._name}: not placed and set up within startup_timeout_s={timeout:g} "
                f"(asks Ray for {replica_resources(self.spec)})") from None
        except ray.exceptions.RayTaskError as exc:
            self.kill()
            raise ReplicaSetupFailed(f"{self._name}: setup() failed: {exc.cause!r}") from None
        except ray.exceptions.RayError as exc:
            self.kill()
            raise ReplicaDied(f"{self._name}: actor died during setup: {exc}") from None
        self._pid, self.node_id = pid, node_id  # where it runs (a busy node spills)
        self._backend.register(self)
        self._park = asyncio.create_task(self._watch_park(), name=f"{self._name}-park")
        return float(setup_s)

    async def _watch_park(self) -> None:
        try:
            await asyncio.wrap_future(self._actor.park.remote().future())
        except Exception as exc:
            self._died(exc)
        else:
            self.close("drained")

    def _died(self, exc: BaseException) -> None:
        if not self._stopping:
            self._backend.suspect(self.node_id)
        self.close(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def close(self, reason: str) -> None:
        """Mark the replica gone (idempotent): waiters and the in-flight call see it now."""
        if self._closed is not None and not self._closed.done():
            if not self._stopping:
                log.warning("replica %s on Ray is gone: %s", self._name, reason)
            self._closed.set_result(reason)
        self._backend.unregister(self)

    async def infer(self, batch_id: int, tensors: Tensors,
                    traceparent: str | None = None) -> BatchResult | BatchError:
        ray = raylink.require_ray()
        closed = self._closed
        if self._actor is None or closed is None or closed.done():
            raise ReplicaDied(f"{self._name} is not running")
        # awaiting the ObjectRef itself: ~0.25 ms a call cheaper than wrapping ref.future()
        call = asyncio.ensure_future(self._actor.infer.remote(batch_id, tensors,
                                                                traceparent))
        await asyncio.wait((call, closed), return_when=asyncio.FIRST_COMPLETED)
        if not call.done():
            call.cancel()
            raise ReplicaDied(f"{self._name}: {closed.result()}")
        try:
            result: BatchResult | BatchError = call.result()
        except ray.exceptions.RayTaskError as exc:  # e.g. an output Ray cannot serialise
            return BatchError(batch_id, ErrorKind.MODEL, f"{self._name}: {exc.cause!r}")
        except ray.exceptions.RayError as exc:  # died, unavailable, node gone
            self._died(exc)
            raise ReplicaDied(f"{self._name}: {exc}") from None
        return result

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await asyncio.shield(self._closed)

    def alive(self) -> bool:
        return self._actor is not None and self._closed is not None and not self._closed.done()

    async def stop(self, timeout_s: float) -> None:
        self._stopping = True
        if self._actor is None:  # never created (no node could hold it): forget its place
            self.close("stopped")
            return
        if self.alive():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.wrap_future(self._actor.drain.remote().future()), timeout_s)
        self.kill()

    def kill(self) -> None:
        self._stopping = True
        if self._actor is not None:
            with contextlib.suppress(Exception):
                raylink.require_ray().kill(self._actor, no_restart=True)
        if self._park is not None:
            self._park.cancel()
        self.close("stopped")
