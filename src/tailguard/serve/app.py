"""The gateway's ASGI application: V2 and OpenAI routes, health, metadata and metrics.

The hot routes (``POST …/infer``, ``POST /v1/embeddings`` and ``POST /v1/audio/speech``) are
served by a raw ASGI path — no per-request framework objects, measured to matter at >10k req/s —
and everything else by a Starlette router.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tailguard import __version__
from tailguard.autoscale.controller import controller_for
from tailguard.observe.gpu import GpuProbe
from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics, outcome
from tailguard.observe.usage import UsageMeter
from tailguard.observe.utilisation import BUSY_WINDOW_S, Utilisation, UtilisationCollector
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.deployment import Deployment
from tailguard.serve.deployment.queue import FairQueueConfig
from tailguard.serve.errors import BadRequest, Forbidden, ModelFailed, NotFound, ServeError
from tailguard.serve.gate.gate import TenantGate
from tailguard.serve.gate.identity import Principal
from tailguard.serve.http import read_body, respond
from tailguard.serve.loader import instantiate, signature
from tailguard.serve.protocols import openai, speech, v2
from tailguard.serve.replicas.backend import ReplicaBackend
from tailguard.serve.replicas.local import LocalBackend
from tailguard.tensors import Tensors

log = logging.getLogger("tailguard.serve")


def _as_serve_error(exc: Exception, path: str) -> ServeError:
    """A bug below the adapters still answers: 500 with a message, logged with its trace."""
    if isinstance(exc, ServeError):
        return exc
    log.exception("internal error serving %s", path, exc_info=exc)
    return ModelFailed(f"internal error: {type(exc).__name__}: {exc}")


class _Backends:
    """One backend per kind, shared by the deployments using it: local processes, or Ray
    actors on the config's one cluster (connected here, so an unreachable cluster fails the
    start with its address, before anything is served). ``fixed`` (tests) serves them all."""

    def __init__(self, config: ServeConfig, fixed: ReplicaBackend | None) -> None:
        self._config = config
        self._fixed = fixed
        self._local = LocalBackend()
        self._ray: ReplicaBackend | None = None

    def warm(self) -> None:
        """Start the local replica template before the first replica needs it."""
        if self._fixed is None:
            self._local.warm(s for s in self._config.deployments
                             if self._config.backend_of(s) == "local")

    async def close(self) -> None:
        await self._local.close()

    def of(self, spec: DeploymentSpec) -> ReplicaBackend:
        if self._fixed is not None:
            return self._fixed
        if self._config.backend_of(spec) != "ray":
            return self._local
        if self._ray is None:
            from tailguard.serve.replicas.ray_backend import RayBackend

            on_ray = RayBackend(self._config.ray_address_of())
            on_ray.connect()
            self._ray = on_ray
        return self._ray


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class Gateway:
    """ASGI app serving every deployment of a :class:`ServeConfig`."""

    def __init__(self, config: ServeConfig, backend: ReplicaBackend | None = None) -> None:
        self.config = config
        self.metrics = ServeMetrics(objectives_s=[
            o / 1000 for o in [*(d.p99_ms for d in config.deployments),
                               *(t.p99_ms for t in config.tenants)] if o is not None])
        self.usage = UsageMeter(self.metrics.registry)
        self.gate = TenantGate(config, self.usage)
        self.started_at = int(time.time())
        backends = self._backends = _Backends(config, backend)
        self.deployments: dict[str, Deployment] = {}
        self._speakers: dict[str, speech.Voices] = {}  # the deployments that speak
        for spec in config.deployments:
            model = instantiate(spec)
            sig = signature(model)
            if speech.speech_capable(sig):
                self._speakers[spec.name] = speech.voices_of(model)
            self.deployments[spec.name] = Deployment(
                spec, sig, backends.of(spec), DeploymentMetrics(self.metrics, spec.name),
                self.usage,
                FairQueueConfig(starvation_s=config.admission.starvation_s))
        self.gpu = GpuProbe()
        self.autoscaler = controller_for(self.deployments, gpu=self.gpu)
        self.metrics.watch(lambda: [(d.name, d.queued_rows, d.ready_replicas)
                                    for d in self.deployments.values()])
        self.metrics.registry.register(UtilisationCollector(self._utilisation))
        self._counters: dict[tuple[str, str, int], object] = {}
        self._latency: dict[tuple[str, str, int], object] = {}
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
                Route("/v1/usage", self._usage),
                Route("/v1/deployments/{model}/restart", self._restart, methods=["POST"]),
                Route("/metrics", self._metrics),
            ],
            # Exception goes to Starlette's ServerErrorMiddleware, which answers with it and
            # then re-raises, so the server logs the bug as well.
            exception_handlers={ServeError: self._route_error, HTTPException: self._http_error,
                                Exception: self._route_error},
            lifespan=self._lifespan,
        )

    def _utilisation(self) -> list[Utilisation]:
        """Scrape time: each deployment's busy fraction, and its GPUs' where it has any."""
        # The loop's clock is CLOCK_MONOTONIC (asyncio's and uvloop's alike); a scrape may
        # also render outside the loop (tests), so read that clock directly.
        now = time.monotonic()
        return [Utilisation(d.name, d.recorder.busy_fraction(now, BUSY_WINDOW_S,
                                                             d.ready_replicas),
                            self.gpu.sample(d.replica_pids()))
                for d in self.deployments.values()]

    # ------------------------------------------------------------------ lifecycle
    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._backends.warm()
        for deployment in self.deployments.values():
            await deployment.start()
        self.autoscaler.start()
        # Everything allocated so far lives as long as the server: keep it out of the
        # collector's generations, so a full collection does not stall the request path.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        await self.autoscaler.stop()  # first: no scaling while the deployments drain
        await asyncio.gather(*(d.stop(self.config.graceful_shutdown_s)
                               for d in self.deployments.values()))
        await self._backends.close()

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
            if path == "/v1/audio/speech":
                await self._openai_speech(scope, receive, send)
                return
        await self._router(scope, receive, send)

    def _count(self, deployment: str, protocol: str, status: int, started: float) -> None:
        key = (deployment, protocol, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.metrics.requests.labels(
                deployment, protocol, str(status))
        child.inc()  # type: ignore[attr-defined]
        hist = self._latency.get(key)
        if hist is None:
            hist = self._latency[key] = self.metrics.latency.labels(
                deployment, protocol, outcome(status))
        hist.observe(time.perf_counter() - started)  # type: ignore[attr-defined]

    def _deployment(self, name: str, version: str | None, principal: Principal,
                    infer: bool = False) -> Deployment:
        """Resolve a deployment for ``principal``: 404 if unknown (or, outside infer, not
        theirs: invisible), 403 if it exists but the tenant may not call it."""
        deployment = self.deployments.get(name)
        if deployment is None or (not infer and not self.gate.may_use(principal, name)):
            raise NotFound(f"unknown model {name!r}; served models: {self._visible(principal)}")
        self.gate.authorise(principal, name)
        if version is not None and version != deployment.spec.version:
            raise NotFound(f"model {name!r} has no version {version!r}; "
                           f"served version: {deployment.spec.version!r}")
        return deployment

    def _visible(self, principal: Principal) -> list[str]:
        return sorted(n for n in self.deployments if self.gate.may_use(principal, n))

    @staticmethod
    def _error_headers(exc: ServeError) -> list[tuple[bytes, bytes]]:
        if exc.retry_after_s is None:
            return []
        # Retry-After is whole seconds (RFC 9110); retry-after-ms, which the OpenAI client
        # reads first, says when a shed request's backlog has drained to the millisecond.
        headers = [(b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()),
                   (b"retry-after-ms", str(max(1, math.ceil(exc.retry_after_s * 1000))).encode())]
        if exc.reason is not None:
            headers.append((b"x-tailguard-reject-reason", exc.reason.encode()))
        return headers

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
            principal = self.gate.authenticate(scope["headers"])
            deployment = self._deployment(name, version, principal, infer=True)
            decoded: list[v2.InferRequest] = []

            async def read() -> tuple[Tensors, int, Hashable]:
                body = await read_body(scope, receive, self.config.max_request_bytes)
                decoded.append(v2.decode_infer(body, deployment.signature))
                return decoded[0].tensors, decoded[0].rows, decoded[0].key

            # Admitted as one row before its body is read: a request refused under overload
            # costs no reading or decoding. A bigger one is judged again once decoded.
            outputs = await self._run(principal, deployment, read, rows_hint=1)
            payload = v2.encode_infer(name, deployment.spec.version, decoded[0], outputs,
                                      deployment.signature)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, path)
            self._count(label, "v2", exc.status, started)
            await respond(send, exc.status, orjson.dumps({"error": exc.message}),
                          self._error_headers(exc))
            return
        self._count(label, "v2", 200, started)
        await respond(send, 200, payload)

    async def _run(self, principal: Principal, deployment: Deployment,
                   read: Callable[[], Awaitable[tuple[Tensors, int, Hashable]]],
                   rows_hint: int) -> Tensors:
        """Admit ``rows_hint`` rows, then ``read`` the request (tensors, rows, batching key),
        queue and await it, metering its outcome for its tenant."""
        loop = asyncio.get_running_loop()
        caller = self.gate.admit(principal, deployment, rows_hint, loop.time())
        status, rows = 500, rows_hint
        try:
            tensors, rows, key = await read()
            self.gate.resize(principal, deployment, rows_hint, rows, loop.time())
            outputs = await deployment.infer(tensors, rows, key, caller=caller)
            status = 200
            if deployment.name in self._speakers:
                self._meter_speech(caller.tenant, deployment, tensors, outputs)
            return outputs
        except ServeError as exc:
            status = exc.status
            raise
        finally:
            self.gate.release(caller)
            self.usage.request(caller.tenant, deployment.name, status, rows)

    def _meter_speech(self, tenant: str, deployment: Deployment, tensors: Tensors,
                      outputs: Tensors) -> None:
        """Characters in and audio seconds out, whichever protocol asked."""
        texts = tensors[deployment.signature.inputs[0].name].reshape(-1)
        characters = sum(len(t.decode("utf-8", errors="replace")) if isinstance(t, bytes)
                         else len(str(t)) for t in texts)
        rates = outputs["sample_rate"].reshape(-1)
        audio_s = float(sum(int(n) / int(r) for n, r in zip(outputs["samples"].reshape(-1),
                                                            rates, strict=True) if r > 0))
        self.usage.speech(tenant, deployment.name, characters, audio_s)

    async def _openai_speech(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        label = "_unknown"
        try:
            principal = self.gate.authenticate(scope["headers"])
            body = await read_body(scope, receive, self.config.max_request_bytes)
            request = speech.decode_speech(body)
            deployment = self._deployment(request.model, None, principal, infer=True)
            label = deployment.name
            voices = self._speakers.get(deployment.name)
            if voices is None:
                raise BadRequest(f"model {request.model!r} does not speak (needs one BYTES "
                                 "input and FP32 'audio', INT64 'samples' and 'sample_rate' "
                                 f"outputs); speech models: {sorted(self._speakers)}")
            speech.check_speech(request, voices)
            tensors = speech.to_tensors(request, deployment.signature)

            async def read() -> tuple[Tensors, int, Hashable]:
                return tensors, 1, speech.SPEECH_KEY

            outputs = await self._run(principal, deployment, read, 1)
            audio = speech.speech_of(outputs)
            payload = speech.encode_audio(audio, request.response_format)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, "/v1/audio/speech")
            self._count(label, "openai", exc.status, started)
            await respond(send, exc.status, openai.error_body(exc.message, exc.status),
                          self._error_headers(exc))
            return
        self._count(label, "openai", 200, started)
        await respond(send, 200, payload, [(b"x-sample-rate", str(audio.sample_rate).encode())],
                      media_type=speech.MEDIA_TYPES[request.response_format])

    async def _openai_embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        label = "_unknown"
        try:
            principal = self.gate.authenticate(scope["headers"])
            body = await read_body(scope, receive, self.config.max_request_bytes)
            request = openai.decode_embeddings(body)
            deployment = self._deployment(request.model, None, principal, infer=True)
            label = deployment.name
            if not openai.embeddings_capable(deployment.signature):
                raise BadRequest(f"model {request.model!r} does not produce embeddings "
                                 "(needs one BYTES input and an FP32 'embedding' output)")
            tensors = openai.to_tensors(request, deployment.signature)

            async def read() -> tuple[Tensors, int, Hashable]:
                return tensors, len(request.texts), ()

            outputs = await self._run(principal, deployment, read, len(request.texts))
            payload = openai.encode_embeddings(request, outputs)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, "/v1/embeddings")
            self._count(label, "openai", exc.status, started)
            await respond(send, exc.status, openai.error_body(exc.message, exc.status),
                          self._error_headers(exc))
            return
        self._count(label, "openai", 200, started)
        await respond(send, 200, payload)

    # ------------------------------------------------------------------ other routes
    async def _http_error(self, _request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for HTTPException only
        return _json({"error": exc.detail}, exc.status_code)

    async def _route_error(self, request: Request, exc: Exception) -> Response:
        """The routes' one error answer, the hot routes' own: a ServeError's status, its
        ``{"error": message}`` and retry headers; any other exception a logged 500."""
        error = _as_serve_error(exc, request.url.path)
        response = _json({"error": error.message}, error.status)
        response.raw_headers.extend(self._error_headers(error))
        return response

    async def _server_metadata(self, request: Request) -> Response:
        self._principal(request)
        return _json({"name": "tailguard", "version": __version__, "extensions": []})

    async def _live(self, _request: Request) -> Response:
        return _json({"live": True})

    async def _ready(self, _request: Request) -> Response:
        ready = all(d.is_ready for d in self.deployments.values())
        return _json({"ready": ready}, 200 if ready else 503)

    def _principal(self, request: Request) -> Principal:
        """The caller, or :class:`Unauthorized` (answered by :meth:`_route_error`)."""
        return self.gate.authenticate(request.headers.raw)

    def _lookup(self, request: Request) -> Deployment:
        """The route's deployment for its caller, or the gate's or :meth:`_deployment`'s
        error (401, 403, 404)."""
        return self._deployment(request.path_params["model"],
                                request.path_params.get("version"), self._principal(request))

    async def _model_metadata(self, request: Request) -> Response:
        found = self._lookup(request)
        return _json(v2.model_metadata(found.name, found.spec.version, found.signature))

    async def _model_ready(self, request: Request) -> Response:
        found = self._lookup(request)
        ready = found.is_ready
        return _json({"name": found.name, "ready": ready, "ready_replicas": found.ready_replicas},
                     200 if ready else 503)

    async def _openai_models(self, request: Request) -> Response:
        principal = self._principal(request)
        return Response(openai.models_list(self._visible(principal), self.started_at),
                        media_type="application/json")

    async def _deployments(self, request: Request) -> Response:
        principal = self._principal(request)
        names = self._visible(principal)
        scaler = self.autoscaler
        return _json({"deployments": [
            {**self.deployments[n].status(),
             "autoscaling": scaler.status(n) if n in scaler else None}
            for n in names]})

    async def _restart(self, request: Request) -> Response:
        """Rolling restart of a deployment's replicas (admin; used by ``tailguard chaos``)."""
        if not self._principal(request).admin:
            raise Forbidden("restarting replicas needs an admin key")
        found = self._lookup(request)
        restarted = await found.restart()
        return _json({"name": found.name, "restarted": restarted})

    async def _usage(self, request: Request) -> Response:
        principal = self._principal(request)
        tenant = None if principal.admin else principal.id
        return _json({"since": self.usage.since, "usage": self.usage.report(tenant)})

    async def _metrics(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal.admin:
            body = self.metrics.render()
        else:  # a tenant sees only its own series and its own deployments'
            body = self.metrics.render(tenant=principal.id,
                                       deployments=set(self._visible(principal)))
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
