"""Cold start: seconds from asking for a replica to its serving, for ``minilm`` and ``tts``.

What a burst pays before a new replica helps: the replica process is created (a fresh
interpreter, or a fork of the pre-imported template when ``TAILGUARD_REPLICA_TEMPLATE`` is
on), imports, runs ``setup()`` and answers one batch. Measured with the local backend
directly, ``--repeats`` times per model, one replica at a time; reports the median and the
setup() share (reported by the replica). Run it with the template off and on to compare::

    TAILGUARD_REPLICA_TEMPLATE=0 python benchmarks/cold_start.py
    python benchmarks/cold_start.py

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import numpy as np

from tailguard.models.tts import tts_available
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.local import LocalBackend

SPECS = {
    "minilm": DeploymentSpec(name="minilm", model="tailguard.models.minilm:MiniLM",
                             options={"threads": 1}),
    "tts": DeploymentSpec(name="tts", model="tailguard.models.tts:PiperTTS",
                          options={"threads": 1}),
}
INPUTS = {"minilm": {"text": np.array([b"hello world"], dtype=object)},
          "tts": {"text": np.array([b"Hello."], dtype=object)}}


async def _once(backend: LocalBackend, name: str, index: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    asked = loop.time()
    replica = backend.create(SPECS[name], index)
    setup_s = await replica.start()
    await replica.infer(1, INPUTS[name])
    serving_s = loop.time() - asked
    await replica.stop(timeout_s=10)
    return serving_s, setup_s


async def main(repeats: int, models: list[str]) -> dict[str, object]:
    backend = LocalBackend()
    out: dict[str, object] = {"template": os.environ.get("TAILGUARD_REPLICA_TEMPLATE", "1")}
    try:
        # On a running server the template is up long before a scale-up: wait for it.
        backend.warm([SPECS[m] for m in models])
        t0 = time.perf_counter()
        out["template_usable"] = await backend.template([]) is not None
        out["template_start_s"] = time.perf_counter() - t0
        for name in models:
            runs = [await _once(backend, name, i) for i in range(repeats)]
            cold = [c for c, _ in runs]
            out[name] = {"cold_start_s_median": statistics.median(cold),
                         "cold_start_s": [round(c, 3) for c in cold],
                         "setup_s_median": statistics.median(s for _, s in runs)}
            print(f"{name}: cold start {statistics.median(cold):.2f} s median of {cold}",
                  flush=True)
    finally:
        await backend.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    models = ["minilm"] + (["tts"] if tts_available() else [])
    t0 = time.perf_counter()
    result = asyncio.run(main(args.repeats, models))
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result))
