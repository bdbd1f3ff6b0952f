"""docker/healthcheck.py, the containers' health check, run as Docker runs it (``python3 -I -S
FILE PORT PATH``, no site packages) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_http import LocalServer

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/readyz" else 503
        body = b'{"status": "ready"}' if status == 200 else b'{"status": "not ready"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with LocalServer(_Handler) as server:
        yield server.port


def _check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_200_is_healthy(port: int) -> None:
    result = _check(str(port), "/readyz")
    assert (result.returncode, result.stderr) == (0, "")


def test_any_other_status_is_unhealthy_and_says_which(port: int) -> None:
    result = _check(str(port), "/healthz-elsewhere")
    assert result.returncode == 1
    assert result.stderr == "healthcheck: GET /healthz-elsewhere answered 503\n"


def test_the_port_and_path_default_to_healthcheck_port_and_readyz(port: int) -> None:
    assert _check(env={"HEALTHCHECK_PORT": str(port)}).returncode == 0


def test_nothing_listening_is_unhealthy_in_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, not listening: the connection is refused
        result = _check(str(closed))
    assert result.returncode == 1
    assert result.stderr.startswith("healthcheck: ")
    assert len(result.stderr.splitlines()) == 1


def test_an_answer_that_is_not_http_is_unhealthy() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = _check(str(listener.getsockname()[1]))
        thread.join(timeout=10)
    assert result.returncode == 1
    assert "not an HTTP answer" in result.stderr
