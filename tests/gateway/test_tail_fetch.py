"""``chenxing tail`` against something that is not the gateway's API: a clear OSError."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gateway.cli.tail_cmd import fetch_tags


@pytest.fixture(params=[b"<html>not the API</html>", b'{"tag": []}', b"[1, 2]"])
def foreign_server(request: pytest.FixtureRequest) -> Iterator[str]:
    body = request.param

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_foreign_answer_is_a_readable_error(foreign_server: str) -> None:
    with pytest.raises(OSError, match=r"not JSON|no tag list"):
        fetch_tags(foreign_server, None, timeout=5)
