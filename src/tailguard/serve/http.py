"""Minimal raw-ASGI helpers for the hot request path (body limit, JSON responses)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from tailguard.serve.errors import BadRequest, PayloadTooLarge

JSON = b"application/json"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole request body, refusing (413) anything over ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequest("invalid Content-Length header") from None
            if declared > limit:
                raise PayloadTooLarge(f"request body of {declared} bytes exceeds the "
                                      f"{limit}-byte limit (max_request_bytes)")
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit "
                                      "(max_request_bytes)")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes,
                  extra_headers: list[tuple[bytes, bytes]] | None = None,
                  media_type: bytes = JSON) -> None:
    headers: list[Any] = [(b"content-type", media_type),
                          (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
