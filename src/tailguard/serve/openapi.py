"""``GET /openapi.json``: every route the gateway serves, as an OpenAPI 3.1 document.

Written out rather than generated: the two hot routes are raw ASGI (no framework object to
introspect), and a client or fuzzer needs the request bodies and error answers, which live in
the protocol adapters. A test checks that every route of the app is listed here.
"""

from __future__ import annotations

import json
from typing import Any

_ERROR = {"description": "typed error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 413, 429, 500, 503, 504)}
_JSON = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}

_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "data": {"description": "flat or nested values; absent with binary_data_size"},
    "parameters": {"type": "object", "properties": {
        "binary_data_size": {"type": "integer", "minimum": 0},
        "binary_data": {"type": "boolean"}}}}}
_INFER_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "parameters": {"type": "object", "properties": {
            "binary_data_output": {"type": "boolean"}}}}}},
    "application/octet-stream": {"schema": {
        "description": "binary tensor data extension: the JSON header (its length in the "
                     "Inference-Header-Content-Length header), then the tensors' bytes"}}}}
_EMBEDDINGS_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string"},
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "encoding_format": {"enum": ["float", "base64"]}}}}}}

_SPEECH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model", "input", "voice"], "properties": {
        "model": {"type": "string"}, "input": {"type": "string"}, "voice": {"type": "string"},
        "response_format": {"enum": ["wav", "pcm"]},
        "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0}}}}}}

_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

# (method, path, summary, request body or None)
ROUTES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("post", "/v2/models/{model}/infer", "V2 inference (JSON or binary tensor data)",
     _INFER_BODY),
    ("post", "/v2/models/{model}/versions/{version}/infer", "V2 inference of a version",
     _INFER_BODY),
    ("post", "/v1/embeddings", "OpenAI-compatible embeddings", _EMBEDDINGS_BODY),
    ("post", "/v1/audio/speech", "OpenAI-compatible text to speech (wav or pcm)", _SPEECH_BODY),
    ("get", "/v2", "V2 server metadata and supported extensions", None),
    ("get", "/v2/health/live", "liveness", None),
    ("get", "/v2/health/ready", "readiness: 200 when every deployment has a ready replica",
     None),
    ("get", "/v2/models/{model}", "V2 model metadata", None),
    ("get", "/v2/models/{model}/versions/{version}", "V2 model metadata of a version", None),
    ("get", "/v2/models/{model}/ready", "model readiness", None),
    ("get", "/v2/models/{model}/versions/{version}/ready", "model version readiness", None),
    ("get", "/v2/models/{model}/config", "model configuration (Triton format)", None),
    ("get", "/v2/models/{model}/versions/{version}/config", "model version configuration",
     None),
    ("post", "/v2/repository/index", "served models and their state (Triton format)", None),
    ("get", "/v1/models", "OpenAI-compatible model list", None),
    ("get", "/v1/deployments", "deployments, replicas, queues and autoscaling decisions", None),
    ("get", "/v1/usage", "per-tenant requests, rows and replica-seconds", None),
    ("post", "/v1/deployments/{model}/restart", "rolling restart of a deployment (admin)",
     None),
    ("get", "/v1/config", "the server's desired state, keys hashed (admin)", None),
    ("post", "/v1/config", "apply a serve config: reconcile the running server (admin)", None),
    ("get", "/metrics", "Prometheus metrics (text format)", None),
    ("get", "/dashboard", "the live dashboard page", None),
    ("get", "/dashboard/static/{name}", "the live dashboard's files", None),
    ("get", "/v1/dashboard/data", "the live dashboard's figures, scoped like /metrics", None),
    ("get", "/openapi.json", "this document", None),
    ("get", "/docs", "every route on one page (from this document)", None),
)


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway's routes."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body in ROUTES:
        params = [p for p in (_MODEL, _VERSION) if f"{{{p['name']}}}" in path]
        op: dict[str, Any] = {"summary": summary, "responses": {"200": _JSON, **_ERRORS}}
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = body
        if path not in ("/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"):
            op["security"] = [{"bearer": []}, {}]  # a key once tenants are configured
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "tailguard", "version": version,
                 "description": "Open Inference Protocol (V2) and OpenAI-compatible routes."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def docs_page(version: str) -> str:
    """``GET /docs``: every route of :func:`document` as one self-contained HTML page (no
    script, no CDN: the server runs offline), with its request body schema."""
    from html import escape

    rows = []
    for path, ops in document(version)["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody")
            schema = "" if body is None else "<pre>" + escape(json.dumps(
                {k: v.get("schema") for k, v in body["content"].items()}, indent=2)) + "</pre>"
            key = "key" if "security" in op else "open"
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{escape(path)}"
                        f"</code></td><td>{escape(op['summary'])}</td><td>{key}</td>"
                        f"<td>{schema}</td></tr>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>tailguard {escape(version)}: routes</title><style>"
            "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
            "pre{margin:0;font-size:12px}</style></head><body>"
            f"<h1>tailguard {escape(version)}</h1><p>Every route this server answers; the "
            "machine-readable form is <a href=/openapi.json>/openapi.json</a>. "
            "<em>key</em>: needs an API key (<code>Authorization: Bearer KEY</code>) once "
            "tenants are configured.</p><table><tr><th>method</th><th>path</th>"
            "<th>what it does</th><th>auth</th><th>request body</th></tr>"
            + "".join(rows) + "</table></body></html>\n")
