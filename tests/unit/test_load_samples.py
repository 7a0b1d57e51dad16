"""``tailguard load`` shows what the server said for each kind of error (issue 19)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tailguard.load import LoadSpec, format_text, run_load


class _Refuses(http.server.BaseHTTPRequestHandler):
    """Answers every infer with 400 and a JSON error, keeping the connection alive."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"error": "input \'INPUT0\': datatype \'FP64\' does not match FP32"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def refusing_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_each_error_status_comes_with_what_the_server_said(refusing_url: str) -> None:
    result = run_load(LoadSpec(refusing_url, model="echo", concurrency=1, duration_s=0.3,
                               bodies=(b'{"inputs": []}',)))
    assert result.ok == 0 and set(result.errors) == {"http_400"}
    assert "does not match FP32" in result.error_samples["http_400"]
    assert "the server said: {\"error\": \"input 'INPUT0'" in format_text(result)
    assert '"error_samples"' in result.to_json()
