"""tests/support/local_http.py: a served handler, a clean stop, quiet errors."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from tests.support import web
from tests.support.local_http import LocalServer


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Broken(_Hello):
    def do_GET(self) -> None:
        raise ConnectionResetError("the client went away")


def test_serves_until_stopped_and_frees_the_port() -> None:
    with LocalServer(_Hello) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert web.get(server.url + "/", timeout=5).text == "hello"
    with pytest.raises(httpx.ConnectError):
        web.get(server.url + "/", timeout=5)
    with socket.socket() as sock:
        # Nothing listens there any more (SO_REUSEADDR: past the closed connection's TIME_WAIT,
        # a bind still fails while a socket listens on the port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))
    server.stop()  # a second stop does nothing


def test_a_server_never_started_stops_cleanly() -> None:
    LocalServer(_Hello).stop()


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_hides_connection_errors(quiet: bool, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalServer(_Broken, quiet=quiet) as server, pytest.raises(httpx.HTTPError):
        web.get(server.url + "/", timeout=5)
    printed = capsys.readouterr().err
    assert ("ConnectionResetError" in printed) is not quiet
