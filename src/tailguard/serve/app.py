"""The gateway's ASGI application: V2 and OpenAI routes, health, metadata and metrics.

The two hot routes (``POST …/infer`` and ``POST /v1/embeddings``) are served by a raw ASGI path
— no per-request framework objects, measured to matter at >10k req/s — and everything else by a
Starlette router.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tailguard import __version__
from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics
from tailguard.serve.config import ServeConfig
from tailguard.serve.deployment import Deployment
from tailguard.serve.errors import BadRequest, NotFound, ServeError
from tailguard.serve.http import read_body, respond
from tailguard.serve.loader import instantiate, signature
from tailguard.serve.protocols import openai, v2
from tailguard.serve.replicas.backend import ReplicaBackend
from tailguard.serve.replicas.local import LocalBackend

log = logging.getLogger("tailguard.serve")


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class Gateway:
    """ASGI app serving every deployment of a :class:`ServeConfig`."""

    def __init__(self, config: ServeConfig, backend: ReplicaBackend | None = None) -> None:
        self.config = config
        self.metrics = ServeMetrics()
        self.started_at = int(time.time())
        backend = backend or LocalBackend()
        self.deployments: dict[str, Deployment] = {}
        for spec in config.deployments:
            sig = signature(instantiate(spec))
            self.deployments[spec.name] = Deployment(
                spec, sig, backend, DeploymentMetrics(self.metrics, spec.name))
        self.metrics.watch(lambda: [(d.name, d.queued_rows, d.ready_replicas)
                                    for d in self.deployments.values()])
        self._counters: dict[tuple[str, str, int], object] = {}
        self._latency: dict[tuple[str, str], object] = {}
        self._router = Starlette(
            routes=[
                Route("/v2", self._server_metadata),
                Route("/v2/health/live", self._live),
                Route("/v2/health/ready", self._ready),
                Route("/v2/models/{model}", self._model_metadata),
                Route("/v2/models/{model}/versions/{version}", self._model_metadata),
                Route("/v2/models/{model}/ready", self._model_ready),
                Route("/v2/models/{model}/versions/{version}/ready", self._model_ready),
                Route("/v1/models", self._openai_models),
                Route("/v1/deployments", self._deployments),
                Route("/metrics", self._metrics),
            ],
            exception_handlers={HTTPException: self._http_error},  # type: ignore[dict-item]
            lifespan=self._lifespan,
        )

    # ------------------------------------------------------------------ lifecycle
    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        for deployment in self.deployments.values():
            await deployment.start()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop(self.config.graceful_shutdown_s)
                               for d in self.deployments.values()))

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                await self._v2_infer(scope, receive, send, path)
                return
            if path == "/v1/embeddings":
                await self._openai_embeddings(scope, receive, send)
                return
        await self._router(scope, receive, send)

    def _count(self, deployment: str, protocol: str, status: int, started: float) -> None:
        key = (deployment, protocol, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.metrics.requests.labels(
                deployment, protocol, str(status))
        child.inc()  # type: ignore[attr-defined]
        lkey = (deployment, protocol)
        hist = self._latency.get(lkey)
        if hist is None:
            hist = self._latency[lkey] = self.metrics.latency.labels(deployment, protocol)
        hist.observe(time.perf_counter() - started)  # type: ignore[attr-defined]

    def _deployment(self, name: str, version: str | None) -> Deployment:
        deployment = self.deployments.get(name)
        if deployment is None:
            raise NotFound(f"unknown model {name!r}; served models: {sorted(self.deployments)}")
        if version is not None and version != deployment.spec.version:
            raise NotFound(f"model {name!r} has no version {version!r}; "
                           f"served version: {deployment.spec.version!r}")
        return deployment

    @staticmethod
    def _error_headers(exc: ServeError) -> list[tuple[bytes, bytes]]:
        if exc.retry_after_s is None:
            return []
        return [(b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode())]

    # ------------------------------------------------------------------ hot routes
    async def _v2_infer(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        started = time.perf_counter()
        parts = path.split("/")
        name = parts[3] if len(parts) > 3 else ""
        label = name if name in self.deployments else "_unknown"
        try:
            if len(parts) == 5:
                version = None
            elif len(parts) == 7 and parts[4] == "versions":
                version = parts[5]
            else:
                raise NotFound(f"no route {path}")
            deployment = self._deployment(name, version)
            body = await read_body(scope, receive, self.config.max_request_bytes)
            request = v2.decode_infer(body, deployment.signature)
            outputs = await deployment.infer(request.tensors, request.rows, request.key)
            payload = v2.encode_infer(name, deployment.spec.version, request, outputs,
                                      deployment.signature)
        except ServeError as exc:
            self._count(label, "v2", exc.status, started)
            await respond(send, exc.status, orjson.dumps({"error": exc.message}),
                          self._error_headers(exc))
            return
        self._count(label, "v2", 200, started)
        await respond(send, 200, payload)

    async def _openai_embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        label = "_unknown"
        try:
            body = await read_body(scope, receive, self.config.max_request_bytes)
            request = openai.decode_embeddings(body)
            deployment = self._deployment(request.model, None)
            label = deployment.name
            if not openai.embeddings_capable(deployment.signature):
                raise BadRequest(f"model {request.model!r} does not produce embeddings "
                                 "(needs one BYTES input and an FP32 'embedding' output)")
            tensors = openai.to_tensors(request, deployment.signature)
            outputs = await deployment.infer(tensors, len(request.texts), ())
            payload = openai.encode_embeddings(request, outputs)
        except ServeError as exc:
            self._count(label, "openai", exc.status, started)
            await respond(send, exc.status, openai.error_body(exc.message, exc.status),
                          self._error_headers(exc))
            return
        self._count(label, "openai", 200, started)
        await respond(send, 200, payload)

    # ------------------------------------------------------------------ other routes
    async def _http_error(self, _request: Request, exc: HTTPException) -> Response:
        return _json({"error": exc.detail}, exc.status_code)

    async def _server_metadata(self, _request: Request) -> Response:
        return _json({"name": "tailguard", "version": __version__, "extensions": []})

    async def _live(self, _request: Request) -> Response:
        return _json({"live": True})

    async def _ready(self, _request: Request) -> Response:
        ready = all(d.is_ready for d in self.deployments.values())
        return _json({"ready": ready}, 200 if ready else 503)

    def _lookup(self, request: Request) -> Deployment | Response:
        try:
            return self._deployment(request.path_params["model"],
                                    request.path_params.get("version"))
        except NotFound as exc:
            return _json({"error": exc.message}, 404)

    async def _model_metadata(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        return _json(v2.model_metadata(found.name, found.spec.version, found.signature))

    async def _model_ready(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        ready = found.is_ready
        return _json({"name": found.name, "ready": ready, "ready_replicas": found.ready_replicas},
                     200 if ready else 503)

    async def _openai_models(self, _request: Request) -> Response:
        return Response(openai.models_list(sorted(self.deployments), self.started_at),
                        media_type="application/json")

    async def _deployments(self, _request: Request) -> Response:
        return _json({"deployments": [d.status() for d in self.deployments.values()]})

    async def _metrics(self, _request: Request) -> Response:
        return Response(self.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")
