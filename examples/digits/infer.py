"""Send a few held-out digits to a running ``tailguard serve`` over V2 and print predictions.

    python examples/digits/infer.py --url http://127.0.0.1:8010 --rows 8
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll ``/v2/health/ready`` until it answers 200 or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server at {url} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8010")
    parser.add_argument("--data", type=Path, default=Path(".tailguard/examples/digits"))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--ready-timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    wait_ready(args.url, args.ready_timeout_s)
    table = pq.read_table(args.data / "test.parquet").slice(0, args.rows)
    x = np.stack(table["features"].to_numpy(zero_copy_only=False)).astype(np.float32)
    labels = table["label"].to_pylist()
    body = {"inputs": [{"name": "features", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    request = urllib.request.Request(f"{args.url}/v2/models/digits/infer",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = {o["name"]: o["data"] for o in json.load(response)["outputs"]}
    predicted = outputs.get("label") or next(iter(outputs.values()))
    right = sum(int(p) == int(y) for p, y in zip(predicted, labels, strict=False))
    print(f"predicted {[int(p) for p in predicted]}")
    print(f"labels    {labels}  ({right}/{len(labels)} right)")


if __name__ == "__main__":
    main()
