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
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import orjson
from prometheus_client import ProcessCollector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tailguard import __version__
from tailguard.autoscale.controller import controller_for
from tailguard.observe import dashboard
from tailguard.observe.gpu import GpuProbe
from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics, outcome
from tailguard.observe.process import ReplicaProcessCollector
from tailguard.observe.trace_spec import build_tracing
from tailguard.observe.usage import UsageMeter
from tailguard.observe.utilisation import BUSY_WINDOW_S, Utilisation, UtilisationCollector
from tailguard.serve import openapi
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.deployment import Deployment
from tailguard.serve.deployment.queue import FairQueueConfig
from tailguard.serve.errors import BadRequest, Forbidden, ModelFailed, NotFound, ServeError
from tailguard.serve.gate.gate import TenantGate
from tailguard.serve.gate.identity import Principal
from tailguard.serve.http import read_body, refuse_encoded, respond
from tailguard.serve.live_apply import ConfigApplier, ConfigInvalid, parse_config, sighup_handler
from tailguard.serve.loader import ModelSignature, instantiate, signature
from tailguard.serve.protocols import openai, speech, v2, v2_binary, v2_routes
from tailguard.serve.reconcile import RestartRequired
from tailguard.serve.replicas.backend import ReplicaBackend
from tailguard.serve.replicas.local import LocalBackend
from tailguard.tensors import Tensors

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tailguard.observe.tracing import Tracing

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
        self._env = config.tracing.env()  # replicas trace, and export, as the gateway does
        self._local = LocalBackend(self._env)
        self._ray: ReplicaBackend | None = None

    def warm(self) -> None:
        """Start the local replica template before the first replica needs it."""
        if self._fixed is None:
            self._local.warm(s for s in self._config.deployments
                             if self._config.backend_of(s) == "local")

    async def close(self) -> None:
        await self._local.close()

    def is_local(self, spec: DeploymentSpec) -> bool:
        """Its replicas are processes on this machine (``/proc`` can read them)."""
        return self._fixed is None and self._config.backend_of(spec) != "ray"

    def of(self, spec: DeploymentSpec) -> ReplicaBackend:
        if self._fixed is not None:
            return self._fixed
        if self._config.backend_of(spec) != "ray":
            return self._local
        if self._ray is None:
            from tailguard.serve.replicas.ray_backend import RayBackend

            on_ray = RayBackend(self._config.ray_address_of(), self._env)
            on_ray.connect()
            self._ray = on_ray
        return self._ray


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _asset(name: str) -> Response:
    """A file of the live page, or 404."""
    found = dashboard.asset(name)
    if found is None:
        raise NotFound(f"no dashboard file {name!r}")
    body, media = found
    return Response(body, media_type=media, headers={"cache-control": "no-cache"})


class Gateway:
    """ASGI app serving every deployment of a :class:`ServeConfig`.

    ``tracing`` replaces the tracer ``config.tracing`` would build (tests pass one exporting
    to memory)."""

    def __init__(self, config: ServeConfig, backend: ReplicaBackend | None = None,
                 tracing: Tracing | None = None) -> None:
        self.config = config
        self.tracing = tracing if tracing is not None else build_tracing(config.tracing,
                                                                         "gateway")
        self.metrics = ServeMetrics(objectives_s=[
            o / 1000 for o in [*(d.p99_ms for d in config.deployments),
                               *(t.p99_ms for t in config.tenants)] if o is not None])
        self.usage = UsageMeter(self.metrics.registry, self.metrics.latency_buckets)
        self.gate = TenantGate(config, self.usage)
        self.started_at = int(time.time())
        self._backends = _Backends(config, backend)
        self.deployments: dict[str, Deployment] = {}
        self._speakers: dict[str, speech.Voices] = {}  # the deployments that speak
        for spec in config.deployments:
            model = instantiate(spec)
            sig = signature(model)
            if speech.speech_capable(sig):
                self._speakers[spec.name] = speech.voices_of(model)
            self.deployments[spec.name] = self.new_deployment(spec, sig)
        self._watch_skew(config)
        self.gpu = GpuProbe()
        self.autoscaler = controller_for(self.deployments, gpu=self.gpu)
        self.metrics.watch(lambda: [(d.name, d.queued_rows, d.ready_replicas,
                                     d.desired_replicas) for d in self.deployments.values()])
        self.metrics.registry.register(UtilisationCollector(self._utilisation))
        ProcessCollector(registry=self.metrics.registry)  # the gateway's own process_*
        self.metrics.registry.register(ReplicaProcessCollector(self._local_replica_pids))
        self.snapshots = dashboard.SnapshotRing(window_s=5.0)  # for the live page's rates
        self._counters: dict[tuple[str, str, int], object] = {}
        self._latency: dict[tuple[str, str, int], object] = {}
        # `tailguard apply` and SIGHUP; serve() gives it the --config path and overrides.
        self.applier = ConfigApplier(self)
        self._router = Starlette(
            routes=[
                Route("/v2", self._server_metadata),
                Route("/v2/health/live", self._live),
                Route("/v2/health/ready", self._ready),
                Route("/v2/models/{model}", self._model_metadata),
                Route("/v2/models/{model}/versions/{version}", self._model_metadata),
                Route("/v2/models/{model}/ready", self._model_ready),
                Route("/v2/models/{model}/versions/{version}/ready", self._model_ready),
                Route("/v2/models/{model}/config", self._model_config),
                Route("/v2/models/{model}/versions/{version}/config", self._model_config),
                Route("/v2/repository/index", self._repository_index, methods=["POST"]),
                *(Route(path, self._unsupported(extension), methods=["GET", "POST"])
                  for path, extension in v2_routes.UNSUPPORTED),
                Route("/v1/models", self._openai_models),
                Route("/v1/deployments", self._deployments),
                Route("/v1/usage", self._usage),
                Route("/v1/deployments/{model}/restart", self._restart, methods=["POST"]),
                Route("/v1/config", self._get_config, methods=["GET"]),
                Route("/v1/config", self._apply_config, methods=["POST"]),
                Route("/metrics", self._metrics),
                Route("/dashboard", self._dashboard_page),
                Route("/dashboard/static/{name}", self._dashboard_asset),
                Route("/v1/dashboard/data", self._dashboard_data),
                Route("/openapi.json", self._openapi),
                Route("/docs", self._docs),
            ],
            # Exception goes to Starlette's ServerErrorMiddleware, which answers with it and
            # then re-raises, so the server logs the bug as well.
            exception_handlers={ServeError: self._route_error, HTTPException: self._http_error,
                                Exception: self._route_error},
            lifespan=self._lifespan,
        )

    def new_deployment(self, spec: DeploymentSpec, sig: ModelSignature) -> Deployment:
        """A deployment of this gateway (not started): at start-up, or added by an apply."""
        return Deployment(spec, sig, self._backends.of(spec),
                          DeploymentMetrics(self.metrics, spec.name), self.usage,
                          FairQueueConfig(starvation_s=self.config.admission.starvation_s),
                          self.tracing)

    def _local_replica_pids(self) -> list[tuple[str, int]]:
        """(deployment, pid) of the ready replicas on this machine (not Ray's)."""
        return [(d.name, pid) for d in self.deployments.values()
                if self._backends.is_local(d.spec) for pid in d.replica_pids()]

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
    def _watch_skew(self, config: ServeConfig) -> None:
        """Deployments with ``skew:`` sample their inputs against the training data."""
        specs = [spec for spec in config.deployments if spec.skew is not None]
        if not specs:
            return
        from tailguard.serve.skew import SkewCollector, SkewMonitor

        monitors = {}
        for spec in specs:
            assert spec.skew is not None
            monitors[spec.name] = self.deployments[spec.name].skew = SkewMonitor(spec.skew)
        self.metrics.registry.register(SkewCollector(monitors))

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._backends.warm()
        for deployment in self.deployments.values():
            await deployment.start()
        self.autoscaler.start()
        if self.applier.config_path is not None:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, sighup_handler(self.applier))
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
        if self.tracing is not None:
            self.tracing.shutdown()
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

    def _request_span(self, scope: Scope, protocol: str) -> Span | None:
        """The request's span if it is traced (its traceparent, else the sample ratio)."""
        tracing = self.tracing
        assert tracing is not None  # callers check first: off costs one attribute test
        parent = tracing.incoming(scope["headers"])
        if parent is None:
            return None
        # Few attributes: encoding each for OTLP costs the exporter's thread ~5 µs of the
        # gateway's CPU (benchmarks/tracing_overhead.py); the name says the route.
        return tracing.start(f"{protocol} infer", parent, kind=tracing.SERVER,
                             attributes={"tailguard.protocol": protocol})

    def _end_span(self, span: Span, deployment: str, status: int, error: str | None) -> None:
        span.set_attributes({"tailguard.deployment": deployment,
                             "http.response.status_code": status})
        if status >= 500 and error is not None:  # 4xx are the client's: not a server error
            assert self.tracing is not None
            self.tracing.fail(span, error)
        span.end()

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
        span = None if self.tracing is None else self._request_span(scope, "v2")
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
            header_length = v2_binary.header_length(scope["headers"])
            refuse_encoded(scope["headers"])
            decoded: list[v2.InferRequest] = []

            async def read() -> tuple[Tensors, int, Hashable]:
                body = await read_body(scope, receive, self.config.max_request_bytes)
                decoded.append(v2.decode_infer(body, deployment.signature, header_length))
                return decoded[0].tensors, decoded[0].rows, decoded[0].key

            # Admitted as one row before its body is read: a request refused under overload
            # costs no reading or decoding. A bigger one is judged again once decoded.
            outputs = await self._run(principal, deployment, read, 1, started, span=span)
            answer = v2.encode_infer(name, deployment.spec.version, decoded[0], outputs,
                                     deployment.signature)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, path)
            self._count(label, "v2", exc.status, started)
            if span is not None:
                self._end_span(span, label, exc.status, exc.message)
            await respond(send, exc.status, orjson.dumps({"error": exc.message}),
                          self._error_headers(exc))
            return
        self._count(label, "v2", 200, started)
        if span is not None:
            self._end_span(span, label, 200, None)
        if answer.header_length is None:
            await respond(send, 200, answer.body)
        else:
            await respond(send, 200, answer.body,
                          [(v2_binary.HEADER_LENGTH, str(answer.header_length).encode())],
                          content_type=b"application/octet-stream")

    async def _run(self, principal: Principal, deployment: Deployment,
                   read: Callable[[], Awaitable[tuple[Tensors, int, Hashable]]],
                   rows_hint: int, started: float, span: Span | None = None) -> Tensors:
        """Admit ``rows_hint`` rows, then ``read`` the request (tensors, rows, batching key),
        queue and await it, metering its outcome and latency (since ``started``, a
        ``perf_counter``) for its tenant. ``span``: the request's, when traced (admission's
        answer becomes an event on it)."""
        loop = asyncio.get_running_loop()
        if span is not None:
            span.set_attribute("tailguard.tenant", principal.id)
        try:
            caller = self.gate.admit(principal, deployment, rows_hint, loop.time())
        except ServeError as exc:
            # Refused at the door: still one request of the tenant's latency and shed SLIs.
            self.usage.finished(principal.id, deployment.name, exc.status,
                                time.perf_counter() - started)
            if span is not None:
                span.add_event("refused", {"tailguard.reason": exc.reason or str(exc.status)})
            raise
        status, rows = 500, rows_hint
        try:
            tensors, rows, key = await read()
            self.gate.resize(principal, deployment, rows_hint, rows, loop.time())
            if span is not None:
                span.add_event("admitted")
                span.set_attributes({"tailguard.rows": rows,
                                     "tailguard.priority": caller.priority.value})
            outputs = await deployment.infer(tensors, rows, key, caller=caller, trace=span)
            status = 200
            if deployment.name in self._speakers:
                self._meter_speech(caller.tenant, deployment, tensors, outputs)
            return outputs
        except ServeError as exc:
            status = exc.status
            raise
        finally:
            self.gate.release(caller)
            self.usage.request(caller.tenant, deployment.name, status, rows,
                               time.perf_counter() - started)

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
        span = None if self.tracing is None else self._request_span(scope, "openai")
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

            outputs = await self._run(principal, deployment, read, 1, started, span=span)
            audio = speech.speech_of(outputs)
            payload = speech.encode_audio(audio, request.response_format)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, "/v1/audio/speech")
            self._count(label, "openai", exc.status, started)
            if span is not None:
                self._end_span(span, label, exc.status, exc.message)
            await respond(send, exc.status, openai.error_body(exc.message, exc.status),
                          self._error_headers(exc))
            return
        self._count(label, "openai", 200, started)
        if span is not None:
            self._end_span(span, label, 200, None)
        await respond(send, 200, payload, [(b"x-sample-rate", str(audio.sample_rate).encode())],
                      content_type=speech.MEDIA_TYPES[request.response_format])

    async def _openai_embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        span = None if self.tracing is None else self._request_span(scope, "openai")
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

            outputs = await self._run(principal, deployment, read, len(request.texts), started,
                                      span=span)
            payload = openai.encode_embeddings(request, outputs)
        except Exception as exc:  # every request ends with a typed JSON answer
            exc = _as_serve_error(exc, "/v1/embeddings")
            self._count(label, "openai", exc.status, started)
            if span is not None:
                self._end_span(span, label, exc.status, exc.message)
            await respond(send, exc.status, openai.error_body(exc.message, exc.status),
                          self._error_headers(exc))
            return
        self._count(label, "openai", 200, started)
        if span is not None:
            self._end_span(span, label, 200, None)
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
        return _json({"name": "tailguard", "version": __version__,
                      "extensions": list(v2_routes.EXTENSIONS)})

    async def _openapi(self, _request: Request) -> Response:
        return _json(openapi.document(__version__))

    async def _docs(self, _request: Request) -> Response:
        return HTMLResponse(openapi.docs_page(__version__))

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

    async def _model_config(self, request: Request) -> Response:
        found = self._lookup(request)
        return _json(v2_routes.model_config(found.name, found.spec.max_batch_size,
                                            found.signature))

    async def _repository_index(self, request: Request) -> Response:
        principal = self._principal(request)
        return _json(v2_routes.repository_index(
            [(n, self.deployments[n].spec.version, self.deployments[n].is_ready)
             for n in self._visible(principal)]))

    def _unsupported(self, extension: str) -> Callable[[Request], Awaitable[Response]]:
        async def refuse(request: Request) -> Response:
            self._principal(request)
            raise BadRequest(v2_routes.unsupported(extension, request.url.path))
        return refuse

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

    async def _get_config(self, request: Request) -> Response:
        """The desired state the server runs (admin): API keys only as sha256 digests."""
        if not self._principal(request).admin:
            raise Forbidden("reading the config needs an admin key")
        return _json({"config": self.config.model_dump(mode="json")})

    async def _apply_config(self, request: Request) -> Response:
        """``tailguard apply``: body ``{"config": {...}, "dry_run": bool}`` (admin). 400 names
        the invalid field, 409 a field only a restart can change; either changes nothing."""
        if not self._principal(request).admin:
            raise Forbidden("applying a config needs an admin key")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict) or "config" not in body:
            raise BadRequest('send {"config": {...serve config...}, "dry_run": false}')
        dry_run = bool(body.get("dry_run", False))
        try:
            # Shielded: a client that hangs up must not stop a reconcile half-way.
            plan = await asyncio.shield(
                self.applier.apply(parse_config(body["config"]), dry_run=dry_run))
        except ConfigInvalid as exc:
            raise BadRequest(f"invalid config, nothing changed: {exc}") from None
        except RestartRequired as exc:
            return _json({"error": str(exc), "plan": exc.plan.to_dict()}, 409)
        return _json({"applied": not dry_run and not plan.empty, "dry_run": dry_run,
                      "plan": plan.to_dict()})

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

    async def _dashboard_page(self, _request: Request) -> Response:
        """The live page: a shell with no data in it, open like a static file; the data it
        polls (:meth:`_dashboard_data`) is authorised and scoped as ``/metrics`` is."""
        return _asset("dashboard.html")

    async def _dashboard_asset(self, request: Request) -> Response:
        return _asset(request.path_params["name"])

    async def _dashboard_data(self, request: Request) -> Response:
        principal = self._principal(request)
        now = self.snapshots.clock()
        if self.snapshots.due(now):  # many open pages share one snapshot per interval
            self.snapshots.observe(dashboard.take_snapshot(self.metrics.registry, now))
        newest = self.snapshots.newest
        assert newest is not None  # observed above on the first poll
        gauges = [dashboard.Gauges(d.name, d.queued_rows, d.ready_replicas,
                                   d.desired_replicas) for d in self.deployments.values()]
        objectives = {d.name: (d.spec.p99_ms / 1000 if d.spec.p99_ms is not None else None)
                      for d in self.deployments.values()}
        if principal.admin:
            data = dashboard.panels(self.snapshots.oldest, newest, gauges, objectives)
        else:  # a tenant sees only its own series and its own deployments'
            data = dashboard.panels(self.snapshots.oldest, newest, gauges, objectives,
                                    tenant=principal.id,
                                    deployments=set(self._visible(principal)))
        return _json(data)
