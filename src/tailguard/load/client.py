"""The load generator's HTTP/1.1 client: as little Python per request as possible.

General-purpose clients (httpx, aiohttp) spend tens of microseconds per request in Python; a
load generator that must offer 10,000 req/s from one process cannot. Here a request is one
``transport.write`` of bytes built once before the run, and a response is one
``httptools.HttpResponseParser.feed_data`` call (C) that fires ``on_message_complete``; the
body is never copied into Python (the parser skips it, as no ``on_body`` is defined). Each
:class:`Connection` is a persistent keep-alive connection carrying one request at a time (no
pipelining), so latencies stay per request.

Whoever drives the connections (the closed- and open-loop engines) implements
:class:`ConnectionOwner` and gets told of each response and each lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools


class LoadTargetError(ValueError):
    """The target URL or a request cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Target:
    """Where the load goes: ``http://host:port[/prefix]`` (plain HTTP only)."""

    host: str
    port: int
    base_path: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise LoadTargetError(f"{url!r}: only http:// targets are supported")
        if not parts.hostname:
            raise LoadTargetError(f"{url!r}: no host; use e.g. http://127.0.0.1:8000")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise LoadTargetError(f"{url!r}: {exc}") from None
        return cls(parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host_header}{self.base_path}{path}"


def build_request(
    target: Target,
    method: str,
    path: str,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The complete bytes of one HTTP/1.1 request, built once and sent many times."""
    for name, value in headers:
        if any(c in name + value for c in "\r\n"):
            raise LoadTargetError(f"header {name!r} must not contain line breaks")
    lines = [f"{method} {target.base_path}{path} HTTP/1.1", f"Host: {target.host_header}"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Open (and close) one TCP connection to ``url``'s host, or raise naming it."""
    target = Target.parse(url)
    try:
        socket.create_connection((target.host, target.port), timeout=timeout_s).close()
    except OSError as exc:
        raise LoadTargetError(
            f"cannot connect to {target.host_header} ({exc.strerror or exc}): is the server "
            "up? (start one with `tailguard serve`, or pass its URL)") from None


class ConnectionOwner(Protocol):
    """What a :class:`Connection` reports to: the engine that drives it."""

    def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None: ...

    def on_lost(self, conn: Connection, error: str) -> None: ...


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight.

    ``token`` is the engine's index of the request in flight (-1 when idle) and ``sent_at``
    its send time; both are set by :meth:`send` and read by the owner.
    """

    __slots__ = ("_owner", "_parser", "lost", "sent_at", "token", "transport")

    def __init__(self, owner: ConnectionOwner) -> None:
        self._owner = owner
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.token = -1
        self.sent_at = 0.0
        self.lost = False

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small requests must leave at once, not wait for Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort("protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose("closed")

    # httptools callback -------------------------------------------------------------------
    def on_message_complete(self) -> None:
        if self.token < 0:  # an answer to no request: the stream cannot be trusted
            self.abort("protocol")
            return
        self._owner.on_response(
            self, self._parser.get_status_code(), self._parser.should_keep_alive()
        )

    # used by the engines ------------------------------------------------------------------
    def send(self, data: bytes, token: int, now: float) -> None:
        self.token = token
        self.sent_at = now
        self.transport.write(data)  # type: ignore[union-attr]

    def abort(self, error: str) -> None:
        """Drop the connection now (reset); the owner hears of it once, with ``error``."""
        if self.transport is not None:
            self.transport.abort()
        self._lose(error)

    def close(self) -> None:
        """Close an idle connection politely (FIN, not reset); the owner hears of it once."""
        if self.transport is not None:
            self.transport.close()
        self._lose("closed")

    def _lose(self, error: str) -> None:
        if not self.lost:
            self.lost = True
            self._owner.on_lost(self, error)


class RetryAfterConnection(Connection):
    """A :class:`Connection` that also reads the answer's ``retry-after-ms`` (or
    ``Retry-After``, seconds) header into ``retry_after_s`` (None when absent): a parser
    callback per header, so only the engines that honour it pay for it."""

    __slots__ = ("retry_after_s",)

    def __init__(self, owner: ConnectionOwner) -> None:
        self.retry_after_s: float | None = None
        super().__init__(owner)

    def on_message_begin(self) -> None:
        self.retry_after_s = None

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        try:
            if key == b"retry-after-ms":
                self.retry_after_s = max(0.0, float(value) / 1000.0)
            elif key == b"retry-after" and self.retry_after_s is None:
                self.retry_after_s = max(0.0, float(value))
        except ValueError:  # an HTTP date, or garbage: no hint
            pass


async def open_connection(owner: ConnectionOwner, target: Target,
                          factory: type[Connection] = Connection) -> Connection:
    """Connect one :class:`Connection`; raises ``OSError`` when the target refuses."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: factory(owner), target.host, target.port)
    return conn


class _Collector:
    """Parser callbacks of :func:`fetch`: keeps the body and notes the end of the message."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.complete = False

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


async def fetch(
    target: Target, path: str, timeout_s: float, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, bytes]:
    """One plain GET (used once, for model metadata): ``(status, body)``.

    Raises ``OSError`` or ``TimeoutError`` when the target cannot answer.
    """
    close = ("Connection", "close")
    request = build_request(target, "GET", path, headers=(*headers, close))
    return await exchange(target, request, timeout_s, target.url(path))


async def exchange(target: Target, request: bytes, timeout_s: float,
                   what: str = "the target") -> tuple[int, bytes]:
    """Send the raw ``request`` on a fresh connection: ``(status, body)`` of its answer.

    Raises ``OSError`` or ``TimeoutError`` when the target cannot answer.
    """

    async def _go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            writer.write(request)
            collector = _Collector()
            parser = httptools.HttpResponseParser(collector)
            while not collector.complete:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"{what} closed before a full answer")
                parser.feed_data(chunk)
            return parser.get_status_code(), b"".join(collector.body)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(_go(), timeout_s)
