"""Gateway + replica overhead on the echo model, against a bare Starlette echo app.

Both servers run under uvicorn (uvloop, httptools) on loopback and are driven by the same
closed-loop load (`tailguard load --concurrency 64`) from a separate process. The bare app
parses the V2 JSON and answers the same V2 response in-process; tailguard validates, queues,
batches, ships each batch to a separate replica process and back. Rounds alternate to spread
machine noise over both; the best round of each is kept.

    python benchmarks/serve_overhead.py [--duration 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys

from _harness import PY, Server, free_port, load, tailguard_server


def bare_app():  # type: ignore[no-untyped-def]
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        outputs = [{"name": "OUTPUT0", "datatype": t["datatype"], "shape": t["shape"],
                    "data": t["data"]} for t in doc["inputs"]]
        body = {"model_name": request.path_params["model"], "model_version": "1",
                "outputs": outputs}
        return Response(orjson.dumps(body), media_type="application/json")

    async def ready(_: Request) -> Response:
        return Response(b'{"ready": true}', media_type="application/json")

    return Starlette(routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"]),
                             Route("/v2/health/ready", ready)])


def run_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", proxy_headers=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        run_bare(args.bare_server)
        return
    echo = [{"name": "echo", "model": "tailguard.models.echo:Echo", "max_batch_size": 256,
             "max_wait_ms": 0}]
    flags = ["--concurrency", str(args.concurrency), "--duration", str(args.duration),
             "--warmup", "1"]
    ours: list[dict] = []
    base: list[dict] = []
    for r in range(args.rounds):
        port = free_port()
        with Server([PY, __file__, "--bare-server", str(port)], port, "bare") as bare:
            base.append(load(bare.url, "echo", *flags))
        with tailguard_server(echo, "overhead") as server:
            ours.append(load(server.url, "echo", *flags))
        print(f"round {r + 1}: tailguard {ours[-1]['ok_rps']:.0f} req/s "
              f"(p99 {ours[-1]['p99_ms']:.1f} ms), bare Starlette {base[-1]['ok_rps']:.0f} req/s "
              f"(p99 {base[-1]['p99_ms']:.1f} ms)", file=sys.stderr)
    best = max(ours, key=lambda x: x["ok_rps"])
    best_base = max(base, key=lambda x: x["ok_rps"])
    errors = sum(x["requests"] - x["ok"] for x in ours)
    ratio = best["ok_rps"] / best_base["ok_rps"]
    print(f"tailguard (gateway + replica process): {best['ok_rps']:.0f} req/s, "
          f"p99 {best['p99_ms']:.1f} ms; bare Starlette echo: {best_base['ok_rps']:.0f} req/s; "
          f"ratio {ratio:.2f}; errors {errors}")
    print(json.dumps({"rps": round(best["ok_rps"]), "baseline_rps": round(best_base["ok_rps"]),
                      "ratio": round(ratio, 3), "p99_ms": best["p99_ms"],
                      "baseline_p99_ms": best_base["p99_ms"], "errors": errors,
                      "concurrency": args.concurrency}))


if __name__ == "__main__":
    main()
