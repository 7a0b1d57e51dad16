"""The load client's pieces in-process: URLs, request bytes, response parsing, wake-ups."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.load.client import Connection, LoadTargetError, Target, build_request
from tailguard.load.runner import new_event_loop
from tailguard.load.timer import LoopWakeup, TimerFdWakeup, make_wakeup


def test_target_parse() -> None:
    assert Target.parse("http://127.0.0.1:8000") == Target("127.0.0.1", 8000, "")
    assert Target.parse("127.0.0.1:9000/prefix/") == Target("127.0.0.1", 9000, "/prefix")
    assert Target.parse("http://localhost").port == 80
    assert Target.parse("http://127.0.0.1:8000").host_header == "127.0.0.1:8000"
    assert Target.parse("http://[::1]:8000").host_header == "[::1]:8000"
    with pytest.raises(LoadTargetError, match="only http"):
        Target.parse("https://127.0.0.1:8443")


class _RequestSeen:
    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.complete = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def test_request_bytes_are_valid_http() -> None:
    target = Target.parse("http://127.0.0.1:8000/base")
    body = b'{"inputs":[]}'
    raw = build_request(target, "POST", "/v2/models/echo/infer", body,
                        (("Authorization", "Bearer k"),))
    seen = _RequestSeen()
    parser = httptools.HttpRequestParser(seen)
    parser.feed_data(raw + raw)  # two back to back, as on a keep-alive connection
    assert seen.complete == 2
    assert parser.get_method() == b"POST"
    assert seen.url.startswith(b"/base/v2/models/echo/infer")
    assert seen.headers[b"host"] == b"127.0.0.1:8000"
    assert seen.headers[b"content-length"] == str(len(body)).encode()
    assert seen.headers[b"authorization"] == b"Bearer k"
    assert seen.body == body + body


def test_header_injection_is_refused() -> None:
    with pytest.raises(LoadTargetError, match="line breaks"):
        build_request(Target.parse("http://h:1"), "GET", "/", headers=(("X", "a\r\nY: b"),))


class _Owner:
    def __init__(self) -> None:
        self.responses: list[tuple[int, int, bool]] = []
        self.lost: list[str] = []

    def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None:
        self.responses.append((conn.token, status, keep_alive))
        conn.token = -1

    def on_lost(self, conn: Connection, error: str) -> None:
        self.lost.append(error)


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def _connected(owner: _Owner) -> tuple[Connection, _Transport]:
    conn = Connection(owner)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_responses_split_anywhere_are_reported_once_each() -> None:
    owner = _Owner()
    conn, transport = _connected(owner)
    conn.send(b"REQ", token=7, now=1.0)
    assert transport.written == [b"REQ"] and conn.sent_at == 1.0
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
    stream = first + second
    conn.data_received(stream[:10])
    conn.data_received(stream[10:50])
    assert owner.responses == [(7, 200, True)]
    conn.token = 8
    conn.data_received(stream[50:])
    assert owner.responses == [(7, 200, True), (8, 404, False)]


def test_garbage_is_a_protocol_error_and_reported_once() -> None:
    owner = _Owner()
    conn, transport = _connected(owner)
    conn.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    assert transport.aborted
    conn.connection_lost(None)  # the abort's own notice must not count twice
    assert owner.lost == ["protocol"]


def test_peer_close_is_reported() -> None:
    owner = _Owner()
    conn, _ = _connected(owner)
    conn.connection_lost(ConnectionResetError())
    assert owner.lost == ["closed"]
    assert conn.lost


@pytest.mark.parametrize(
    "kind",
    [pytest.param("timerfd", marks=pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                      reason="timerfd is Linux-only")),
     "loop"],
)
def test_wakeups_fire_at_their_time_not_before(kind: str) -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        wakeup_type = TimerFdWakeup if kind == "timerfd" else LoopWakeup
        wakeup = wakeup_type(loop, lambda: fired.append(time.perf_counter()))
        targets = [time.perf_counter() + d for d in (0.003, 0.0035, 0.02)]
        try:
            for when in targets:
                wakeup.at(when)
                deadline = time.perf_counter() + 2.0
                while len(fired) < targets.index(when) + 1 and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
        finally:
            wakeup.close()
        assert len(fired) == 3
        return [f - t for f, t in zip(fired, targets, strict=True)]

    loop = new_event_loop()
    try:
        errors = loop.run_until_complete(main())
    finally:
        loop.close()
    assert all(e >= 0 for e in errors)  # never early
    assert all(e < 0.5 for e in errors)  # and not lost (loose: the machine is shared)


def test_make_wakeup_prefers_timerfd_on_linux() -> None:
    async def main() -> str:
        wakeup = make_wakeup(asyncio.get_running_loop(), lambda: None)
        wakeup.close()
        return type(wakeup).__name__

    name = asyncio.run(main())
    assert name == ("TimerFdWakeup" if sys.platform.startswith("linux") else "LoopWakeup")


def test_an_answer_to_no_request_is_a_protocol_error() -> None:
    owner = _Owner()
    conn, transport = _connected(owner)
    conn.data_received(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    assert owner.responses == []
    assert owner.lost == ["protocol"]
    assert transport.aborted


def test_polite_close_is_reported_once() -> None:
    owner = _Owner()
    conn = Connection(owner)
    conn.close()
    conn.connection_lost(None)
    assert owner.lost == ["closed"]


@settings(max_examples=50, deadline=None)
@given(
    statuses=st.lists(st.sampled_from([200, 204, 404, 429, 500, 503]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    chunked=st.booleans(),
)
def test_any_split_of_a_response_stream_yields_each_answer_once(
    statuses: list[int], cuts: list[int], chunked: bool
) -> None:
    def answer(status: int) -> bytes:
        body = b'{"outputs":[]}' if status != 204 else b""
        if chunked and body:
            return (f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n"
                    f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
        return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    class _Chain(_Owner):
        """Sends the next request from inside the callback, as the closed loop does."""

        def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None:
            super().on_response(conn, status, keep_alive)
            conn.token = len(self.responses)

    stream = b"".join(answer(s) for s in statuses)
    owner = _Chain()
    conn, _ = _connected(owner)
    conn.token = 0
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        conn.data_received(stream[a:b])
    assert [status for _, status, _ in owner.responses] == statuses
    assert [token for token, _, _ in owner.responses] == list(range(len(statuses)))
    assert owner.lost == []
