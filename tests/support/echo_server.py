"""A bare target for the load generator's own tests and benchmark.

A raw ASGI app (no framework) on uvicorn with httptools and uvloop, so that the server costs as
little as possible and the numbers measure the generator. It speaks the two routes that
``tailguard serve`` speaks, with the same bodies:

- ``GET /v2/models/{model}``: V2 metadata of the models in :data:`MODELS`, 404 otherwise;
- ``POST /v2/models/{model}/infer``: echoes the request body (``slow`` waits ``delay_ms``
  first; ``closing`` answers with ``Connection: close``), 404 for an unknown model, 400
  with ``--validate`` when the body does not match the declared inputs;
- ``POST /v1/embeddings``: a fixed embedding for a known model;
- ``GET /v2/health/ready``: 200;
- ``GET /stats``: how many infer/embeddings requests came with each ``Authorization`` header
  (``{"auth": {"Bearer k1": 12, "": 3}}``), so tests can check what keys reached the server;
- ``GET /metrics`` with ``--metrics``: Prometheus text with ``tailguard_replicas_ready`` (1)
  and ``tailguard_queue_depth`` (requests in flight) for deployment ``echo``; 404 otherwise.

``--drop`` runs instead a server that reads each request and closes the connection without an
answer. Run it as ``python tests/support/echo_server.py [--port 0]``: it binds first, prints the
port on the first line of stdout, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _io(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


MODELS: dict[str, dict[str, Any]] = {
    "echo": {
        "inputs": [_io("INPUT0", "FP32", [-1, -1])],
        "outputs": [_io("OUTPUT0", "FP32", [-1, -1])],
    },
    "slow": {
        "inputs": [_io("INPUT0", "FP32", [-1, -1])],
        "outputs": [_io("OUTPUT0", "FP32", [-1, -1])],
    },
    "closing": {
        "inputs": [_io("INPUT0", "FP32", [-1, -1])],
        "outputs": [_io("OUTPUT0", "FP32", [-1, -1])],
    },
    "minilm": {
        "inputs": [_io("text", "BYTES", [-1])],
        "outputs": [_io("embedding", "FP32", [-1, 384])],
    },
    # Declared only here, so that the generator must build its payload from the metadata.
    "custom": {
        "inputs": [_io("ids", "INT64", [-1, -1]), _io("mask", "BOOL", [-1, 3])],
        "outputs": [_io("score", "FP32", [-1, 1])],
    },
}

_JSON = [(b"content-type", b"application/json")]
_CLOSE = [(b"connection", b"close")]
_EMBEDDING = json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0,
                                                      "embedding": [0.0] * 8}]}).encode()


def _check_v2_body(model: str, body: bytes) -> str | None:
    """Why ``body`` is not a V2 request for ``model`` (None when it is)."""
    try:
        request = json.loads(body)
        inputs = {item["name"]: item for item in request["inputs"]}
    except (ValueError, KeyError, TypeError) as exc:
        return f"not a V2 request body: {exc}"
    for spec in MODELS[model]["inputs"]:
        got = inputs.get(spec["name"])
        if got is None:
            return f"missing input {spec['name']}"
        if got.get("datatype") != spec["datatype"]:
            return f"input {spec['name']}: datatype {got.get('datatype')} != {spec['datatype']}"
        shape = got.get("shape", [])
        if len(shape) != len(spec["shape"]) or any(
            want not in (-1, have) for want, have in zip(spec["shape"], shape, strict=True)
        ):
            return f"input {spec['name']}: shape {shape} does not fit {spec['shape']}"
        count = 1
        for dim in shape:
            count *= dim
        if len(_flatten(got.get("data", []))) != count:
            return f"input {spec['name']}: data does not have {count} elements"
    return None


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def make_app(delay_ms: float = 50.0, validate: bool = False, metrics: bool = False) -> App:
    """The echo ASGI app; ``slow`` answers after ``delay_ms``; ``validate`` checks bodies;
    ``metrics`` serves ``/metrics``."""
    auth_counts: dict[str, int] = {}
    in_flight = [0]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            auth = next((v.decode("latin-1") for k, v in scope["headers"]
                         if k == b"authorization"), "")
            auth_counts[auth] = auth_counts.get(auth, 0) + 1
        in_flight[0] += 1
        try:
            await _answer(scope, receive, send)
        finally:
            in_flight[0] -= 1

    async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, out = await _route(scope["method"], scope["path"], body)
        headers = [*_JSON, (b"content-length", str(len(out)).encode())]
        if scope["path"] == "/v2/models/closing/infer":
            headers += _CLOSE
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    async def _route(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v2", "models"]:
            model = parts[2]
            if parts[3] != "infer" or model not in MODELS:
                return 404, b'{"error":"unknown model"}'
            if validate and (why := _check_v2_body(model, body)) is not None:
                return 400, json.dumps({"error": why}).encode()
            if model == "slow":
                await asyncio.sleep(delay_ms / 1000.0)
            return 200, body
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v2", "models"]:
            meta = MODELS.get(parts[2])
            if meta is None:
                return 404, b'{"error":"unknown model"}'
            return 200, json.dumps({"name": parts[2], **meta}).encode()
        if method == "POST" and path == "/v1/embeddings":
            try:
                request = json.loads(body)
            except ValueError:
                return 400, b'{"error":"not JSON"}'
            if request.get("model") not in MODELS or "input" not in request:
                return 404, b'{"error":"unknown model"}'
            return 200, _EMBEDDING
        if path == "/v2/health/ready":
            return 200, b"{}"
        if method == "GET" and path == "/stats":
            return 200, json.dumps({"auth": auth_counts}).encode()
        if method == "GET" and path == "/metrics" and metrics:
            depth = in_flight[0] - 1  # not counting this scrape
            return 200, (
                "# HELP tailguard_queue_depth Rows waiting in the deployment queue\n"
                "# TYPE tailguard_queue_depth gauge\n"
                f'tailguard_queue_depth{{deployment="echo"}} {depth}\n'
                "# HELP tailguard_replicas_ready Replicas ready to serve\n"
                "# TYPE tailguard_replicas_ready gauge\n"
                'tailguard_replicas_ready{deployment="echo"} 1.0\n'
            ).encode()
        return 404, b'{"error":"no route"}'

    return app


class _Dropper(asyncio.Protocol):
    """Reads a request, then closes the connection without answering."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._transport.close()


async def _serve_drop(sock: socket.socket) -> None:
    server = await asyncio.get_running_loop().create_server(_Dropper, sock=sock)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="delay of model 'slow'")
    parser.add_argument("--validate", action="store_true", help="check V2 bodies (slower)")
    parser.add_argument("--drop", action="store_true", help="close every connection unanswered")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics")
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    sock.setblocking(False)
    print(sock.getsockname()[1], flush=True)

    if args.drop:
        asyncio.run(_serve_drop(sock))
        return

    import uvicorn

    config = uvicorn.Config(
        make_app(args.delay_ms, args.validate, args.metrics),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
