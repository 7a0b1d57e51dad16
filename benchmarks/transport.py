"""Gateway<->replica transport: batches per second through a real echo replica process.

For each batch size, the gateway side (asyncio, uvloop) sends one message per batch over the
replica's Unix socket and waits for the reply, back to back. The baseline is the same codec
round trip (encode + decode, both directions) done in-process, so the ratio is what the process
boundary and the socket cost.

    python benchmarks/transport.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
import uvloop

from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.codec import decode, encode
from tailguard.serve.replicas.local import LocalReplica
from tailguard.serve.replicas.messages import BatchRequest, BatchResult


def _codec_roundtrip(tensors: dict[str, np.ndarray]) -> None:
    for msg in (BatchRequest(1, tensors), BatchResult(1, tensors, 0.0)):
        frame = b"".join(bytes(b) for b in encode(msg))
        decode(memoryview(frame)[4:])


async def main(seconds: float) -> dict[str, dict[str, float]]:
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo")
    replica = LocalReplica(spec, 0)
    await replica.start()
    out: dict[str, dict[str, float]] = {}
    try:
        for rows in (1, 16, 64, 256):
            tensors = {"INPUT0": np.random.default_rng(0).random((rows, 64), dtype=np.float32)}
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                reply = await replica.infer(n, tensors)
                n += 1
            assert isinstance(reply, BatchResult)
            np.testing.assert_array_equal(reply.tensors["OUTPUT0"], tensors["INPUT0"])
            ipc = n / (time.perf_counter() - start)
            start, m = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 2:
                _codec_roundtrip(tensors)
                m += 1
            local = m / (time.perf_counter() - start)
            out[str(rows)] = {"batches_per_s": round(ipc), "rows_per_s": round(ipc * rows),
                              "mb_per_s": round(2 * ipc * rows * 64 * 4 / 1e6, 1),
                              "in_process_codec_per_s": round(local),
                              "ratio": round(ipc / local, 3)}
            print(f"batch {rows:4d} x 64 FP32: {ipc:8.0f} batches/s through the replica "
                  f"process ({ipc * rows:9.0f} rows/s); in-process codec {local:8.0f}/s")
    finally:
        await replica.stop(5.0)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(main(args.seconds))
    print(json.dumps(result))
