"""The served protocol (``serving.protocol``) over real sockets: every answer arrives whole."""

from __future__ import annotations

import re
import socket

import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


def test_pipelined_get_head_and_conditional_get_arrive_whole(stack: Stack) -> None:
    issuer = stack.issuer().start()
    etag = web.get(issuer.url + "/.well-known/jwks.json").headers["etag"]
    requests = (
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: "
        + etag.encode()
        + b"\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", issuer.port), timeout=10) as sock:
        sock.sendall(requests)
        buf = b""
        while buf.count(b"HTTP/1.1 ") < 4 or not buf.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", buf)
    assert statuses == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 200 OK",
    ]
    assert b'"keys"' in buf
    assert b'"status":"ok"' in buf.rsplit(b"HTTP/1.1 ", 1)[1]


def test_many_requests_on_one_connection(stack: Stack) -> None:
    issuer = stack.issuer().start()
    with web.Client(base_url=issuer.url, timeout=10) as client:
        for _ in range(50):
            assert client.get("/healthz").status_code == 200
            assert client.head("/healthz").status_code == 200
