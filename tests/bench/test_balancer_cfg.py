"""docker/haproxy/haproxy.cfg with its smaller buffer, through the bench's balancer harness and a
real haproxy in front of a stub replica: requests within the 16 KiB body cap (with a few KiB of
headers) pass whole, bodies over it are refused with 413 whether their length is declared or
chunked, the access log keeps to errors unless KEYHOUSE_LB_ACCESS_LOG=all, and a soft stop
ends within its bound even with an event stream open."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from bench.harness.balancer import Balancer, balancer, haproxy_missing
from bench.harness.config import Config
from bench.harness.processes import Server
from tests.support import web
from tests.support.local_http import LocalServer

pytestmark = pytest.mark.e2e

PORT = 18690  # the balancer; its stats on +30
CAP = 16384


class Replica(BaseHTTPRequestHandler):
    """Ready and alive; POST answers how many body bytes arrived."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, data: dict[str, object]) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer({"status": "ok"})

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            size = 0
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                size += len(self.rfile.read(n))
                self.rfile.readline()
        else:
            size = len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self._answer({"received": size})


@pytest.fixture(scope="module")
def replica() -> Iterator[int]:
    with LocalServer(Replica, quiet=True) as server:  # HAProxy's checks close abruptly
        yield server.port


def _config(tmp_path: Path) -> Config:
    return Config(
        quick=True, duration=1, warmup=0, connections=1, threads=1, server_cpus="0",
        load_cpus="1", base_port=PORT, ceiling_seconds=0.1, run_dir=tmp_path, issuer_cmd=[],
        resource_cmd=[], pinned=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lb(replica: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balancer]:
    why = haproxy_missing()
    if why:
        pytest.skip(why)
    with balancer(_config(tmp_path_factory.mktemp("lb")), PORT, [replica], "haproxy-cfg") as b:
        yield b


# About what a browser sends beside a form: ~2.5 KiB of headers.
HEADERS = {"Cookie": "s=" + "c" * 2000, "User-Agent": "Mozilla/5.0 " + "x" * 300}


def _post(lb: Balancer, content: bytes | Iterator[bytes]) -> httpx.Response:
    return web.post(f"{lb.url}/token", content=content, headers=HEADERS, timeout=15)


def _chunks(size: int) -> Iterator[bytes]:
    for start in range(0, size, 4096):
        yield b"a" * min(4096, size - start)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_cap_passes_whole(lb: Balancer, chunked: bool) -> None:
    response = _post(lb, _chunks(CAP) if chunked else b"a" * CAP)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": CAP}


@pytest.mark.parametrize(
    ("size", "chunked"),
    [(CAP + 1, False), (CAP + 1, True), (4 * CAP, True)],
    ids=["content-length", "chunked", "chunked-large"],
)
def test_a_body_over_the_cap_is_refused(lb: Balancer, size: int, chunked: bool) -> None:
    response = _post(lb, _chunks(size) if chunked else b"a" * size)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "invalid_request"


def _logged(server: Server, start: int, text: str) -> list[str]:
    """The log lines after ``start`` with ``text``, once one is there: HAProxy writes a request's
    line after its answer is sent, so a read right after the answer can miss it (seen on CI)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.logs()[start:].splitlines() if text in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_the_access_log_keeps_to_errors_by_default(lb: Balancer) -> None:
    before = len(lb.server.logs())
    assert _post(lb, b"grant_type=client_credentials").status_code == 200
    assert _post(lb, b"a" * (CAP + 1)).status_code == 413  # an error is logged
    # Once the error's line is there, the 200's (answered before it) would be too.
    [line] = _logged(lb.server, before, "POST /token")
    assert " 413 " in line, line


def test_all_logs_every_request(replica: int, tmp_path: Path) -> None:
    if haproxy_missing():
        pytest.skip(str(haproxy_missing()))
    with balancer(_config(tmp_path), PORT + 5, [replica], "haproxy-all", access_log="all") as b:
        assert _post(b, b"grant_type=client_credentials").status_code == 200
        [line] = _logged(b.server, 0, "POST /token")
        assert " 200 " in line, line


STREAM_PORT = 18692  # a balancer of its own (stats on +30): the test stops it


class StreamingReplica(Replica):
    """Ready and alive; GET /events is an event stream that never ends (a heartbeat every
    0.1 s), as the issuer's is for a subscribed resource service."""

    def do_GET(self) -> None:
        if self.path != "/events":
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # HAProxy went away


def test_a_soft_stop_ends_an_open_event_stream_within_hard_stop_after(tmp_path: Path) -> None:
    why = haproxy_missing()
    if why:
        pytest.skip(why)
    streams = LocalServer(StreamingReplica, quiet=True).start()
    try:
        with balancer(_config(tmp_path), STREAM_PORT, [streams.port], "soft") as b:
            proc = b.server.proc
            assert proc is not None
            with (
                web.Client(timeout=30) as http,
                http.stream("GET", f"{b.url}/events") as stream,
            ):
                assert stream.status_code == 200
                received = stream.iter_bytes()
                assert b"keepalive" in next(received)
                stopped_at = time.monotonic()
                os.kill(proc.pid, signal.SIGUSR1)  # what `docker compose stop` sends
                # The stream still flows until the hard stop cuts it and HAProxy exits.
                with contextlib.suppress(httpx.HTTPError):
                    for _ in received:
                        assert time.monotonic() - stopped_at < 20, "the soft stop never ended"
                proc.wait(timeout=20)
                took = time.monotonic() - stopped_at
            assert proc.returncode is not None
            assert 2.5 < took < 10, f"the soft stop took {took:.1f}s (hard-stop-after 3s)"
    finally:
        streams.stop()
