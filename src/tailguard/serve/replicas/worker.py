"""Replica process main loop: load the model once, then serve one batch per message.

Started by the gateway as ``python -m tailguard.serve.replicas.worker --fd N --spec JSON``
(a fresh interpreter: spawned, never forked after torch is loaded). It talks over the inherited
socket ``N`` and exits when the gateway closes it, so it never outlives its gateway.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING

import numpy as np

from tailguard.models.base import Model
from tailguard.observe.trace_spec import TracingSpec, build_tracing
from tailguard.sched import request_default_slice, threads
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.loader import instantiate
from tailguard.serve.replicas.codec import decode, encode
from tailguard.serve.replicas.messages import (
    BatchError,
    BatchRequest,
    BatchResult,
    ErrorKind,
    Message,
    Ready,
    SetupFailed,
    Stop,
)
from tailguard.tensors import Tensors

if TYPE_CHECKING:
    from tailguard.observe.tracing import Tracing


def _recv_exact(sock: socket.socket, size: int) -> memoryview | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return view


def _send(sock: socket.socket, msg: Message) -> None:
    sock.sendmsg(encode(msg))


def _recv(sock: socket.socket) -> Message | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    body = _recv_exact(sock, int.from_bytes(head, "little"))
    return None if body is None else decode(body)


def _check_outputs(model: Model, rows: int, outputs: Tensors) -> Tensors:
    if not isinstance(outputs, dict):
        raise TypeError(f"predict() must return a dict of arrays, got {type(outputs).__name__}")
    checked: Tensors = {}
    for spec in model.output_specs:
        if spec.name not in outputs:
            raise KeyError(f"predict() did not return declared output {spec.name!r}")
        array = np.asarray(outputs[spec.name])
        if spec.datatype != "BYTES" and array.dtype != spec.numpy_dtype:
            array = array.astype(spec.numpy_dtype)
        if array.ndim == 0 or array.shape[0] != rows:
            raise ValueError(
                f"output {spec.name!r} has shape {array.shape}; expected {rows} rows"
            )
        checked[spec.name] = array
    return checked


def run_batch(model: Model, batch_id: int, tensors: Tensors) -> BatchResult | BatchError:
    """One batch through ``model.predict``: its checked outputs, or the error classified
    (ValueError/TypeError are the caller's input: 400; anything else the model's: 500).
    Every backend's replica runs batches through this."""
    start = time.perf_counter()
    rows = len(next(iter(tensors.values())))
    try:
        outputs = _check_outputs(model, rows, model.predict(tensors))
    except (ValueError, TypeError) as exc:
        return BatchError(batch_id, ErrorKind.BAD_INPUT, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return BatchError(batch_id, ErrorKind.MODEL, f"{type(exc).__name__}: {exc}")
    return BatchResult(batch_id, outputs, time.perf_counter() - start)


def traced_batch(tracing: Tracing | None, model: Model, batch_id: int, tensors: Tensors,
                 traceparent: str | None) -> BatchResult | BatchError:
    """:func:`run_batch`, as a ``predict`` span under the gateway's batch span when the batch
    message carries its traceparent (a batch nobody traces carries none). The span ends, and
    with the synchronous exporters is written, before the result is sent."""
    parent = None if tracing is None else tracing.remote_parent(traceparent)
    if tracing is None or parent is None:
        return run_batch(model, batch_id, tensors)
    span = tracing.start("predict", parent, attributes={
        "tailguard.batch_id": batch_id, "tailguard.rows": len(next(iter(tensors.values())))})
    try:
        result = run_batch(model, batch_id, tensors)
        if isinstance(result, BatchError):
            span.set_attribute("tailguard.error_kind", result.kind.value)
            tracing.fail(span, result.error)
        return result
    finally:
        span.end()


def replica_tracing(spec: DeploymentSpec) -> Tracing | None:
    """The replica's tracer, from the spec its gateway put in its environment."""
    return build_tracing(TracingSpec.from_env(), "replica", attributes={
        "tailguard.deployment": spec.name,
        "tailguard.replica": os.environ.get("TAILGUARD_REPLICA", "")})


def _serve(sock: socket.socket, model: Model, tracing: Tracing | None) -> None:
    while True:
        msg = _recv(sock)
        if msg is None or isinstance(msg, Stop):
            return
        if isinstance(msg, BatchRequest):
            _send(sock, traced_batch(tracing, model, msg.batch_id, msg.tensors,
                                     msg.traceparent))


_CPU_POLICIES = {"batch": "SCHED_BATCH", "idle": "SCHED_IDLE"}


def lower_priority(spec: DeploymentSpec) -> None:
    """Niceness, then the scheduling policy, for every thread: on Linux both are per thread,
    and imports have already started some (numpy's BLAS pool); threads started later, torch's
    included, inherit them. Lowering needs no privilege; a platform without the policy keeps
    its niceness."""
    policy = None
    if spec.replica_cpu_policy != "normal":
        policy = getattr(os, _CPU_POLICIES[spec.replica_cpu_policy], None)
        if not hasattr(os, "sched_setscheduler"):
            policy = None
        if policy is None:
            print(f"replica: scheduling policy {spec.replica_cpu_policy!r} is not available "
                  f"on this platform; running with niceness {spec.replica_nice}",
                  file=sys.stderr)
    request_default_slice()  # not the gateway's short one, inherited: batches run long
    for tid in threads():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            if spec.replica_nice:
                nice = os.getpriority(os.PRIO_PROCESS, tid) + spec.replica_nice
                os.setpriority(os.PRIO_PROCESS, tid, min(19, nice))
            if policy is not None:
                os.sched_setscheduler(tid, policy, os.sched_param(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tailguard replica process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--spec", required=True, help="DeploymentSpec as JSON")
    args = parser.parse_args(argv)
    return serve_replica(args.fd, args.spec)


def serve_replica(fd: int, spec_json: str) -> int:
    """The replica's life on socket ``fd``: set up the model, then serve until closed. A
    fresh interpreter (:func:`main`) and a fork of the pre-imported template both run it."""
    # Ctrl-C belongs to the gateway, which drains and then stops its replicas.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    spec = DeploymentSpec.model_validate_json(spec_json)
    lower_priority(spec)
    start = time.perf_counter()
    try:
        model = instantiate(spec)
        model.setup()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        _send(sock, SetupFailed(f"{type(exc).__name__}: {exc}"))
        return 1
    tracing = replica_tracing(spec)
    _send(sock, Ready(os.getpid(), time.perf_counter() - start))
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _serve(sock, model, tracing)
    finally:
        if tracing is not None:
            tracing.shutdown()  # a batching exporter (OTLP) sends what it holds
    return 0


if __name__ == "__main__":
    sys.exit(main())
