"""V2 binary tensor data against V2 JSON on the echo model, through tritonclient.

One tailguard server, one tritonclient client; each round sends the same FP32 tensor as JSON
(``binary_data=False`` both ways) and as binary tensor data (tritonclient's default), in
alternating rounds so machine noise falls on both. Reported per tensor size: the median
round-trip latency of each and their ratio (JSON / binary: above 1 means binary is faster),
measured client to client (encode, send, serve, decode).

    python benchmarks/v2_binary.py [--requests 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from _harness import tailguard_server

SIZES = {"small_1x16": (1, 16), "large_64x1024": (64, 1024)}


def _round(client, data: np.ndarray, binary: bool, requests: int) -> list[float]:  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    times: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        inp = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
        inp.set_data_from_numpy(data, binary_data=binary)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
        got = client.infer("echo", [inp], outputs=[out]).as_numpy("OUTPUT0")
        times.append(time.perf_counter() - started)
        assert got.shape == data.shape
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import tritonclient.http as httpclient

    deployments = [{"name": "echo", "model": "tailguard.models.echo:Echo", "replicas": 1,
                    "max_batch_size": 256, "max_wait_ms": 0}]
    result: dict[str, object] = {"benchmark": "v2_binary", "requests": args.requests,
                                 "rounds": args.rounds}
    with tailguard_server(deployments, "v2-binary") as server:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        try:
            for label, shape in SIZES.items():
                data = np.random.default_rng(0).random(shape, dtype=np.float32)
                _round(client, data, True, 10)  # warm both paths
                _round(client, data, False, 10)
                runs: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(args.rounds):
                    for binary in (False, True):
                        runs[binary] += _round(client, data, binary, args.requests)
                json_ms = statistics.median(runs[False]) * 1000
                binary_ms = statistics.median(runs[True]) * 1000
                print(f"{label:>14}: JSON p50 {json_ms:7.2f} ms   binary p50 {binary_ms:7.2f} ms"
                      f"   JSON/binary {json_ms / binary_ms:5.2f}x")
                result[label] = {"json_p50_ms": round(json_ms, 3),
                                 "binary_p50_ms": round(binary_ms, 3),
                                 "json_over_binary": round(json_ms / binary_ms, 3)}
        finally:
            client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
