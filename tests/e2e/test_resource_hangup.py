"""A client hanging up in the middle of ``POST /NAME`` against a real resource-service process.

A body shorter than its ``Content-Length``, then a closed socket, used to reach the 500 handler
("unexpected error") and uvicorn's "Exception in ASGI application" traceback: with the body
deadline, anyone holding a write token could add ~20 log lines every few seconds per connection.
Now it is one debug line and nothing is sent (issue 13, point 8, on the resource services).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bench.harness.processes import Server
from shared.clock import FakeClock
from tests.support import web
from tests.support.jwks_fakes import ISSUER, JWKSServer, json_answer, key, token
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    jwks = JWKSServer().start()
    jwks.set("/jwks.json", json_answer({"keys": [key(0).public_jwk()]}, max_age=300))
    stack = Stack(tmp_path_factory.mktemp("hangup"))
    try:
        yield stack.resource(
            "photos",
            RESOURCE_ISSUER=ISSUER,
            RESOURCE_JWKS_URL=f"{jwks.url}/jwks.json",
            RESOURCE_LOG_LEVEL="debug",
        ).start()
    finally:
        stack.stop_all()
        jwks.stop()


def _post_head(port: int, bearer: str, content_length: int) -> bytes:
    return (
        f"POST /photos HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {bearer}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def test_a_client_hanging_up_mid_body_is_not_logged_as_an_error(photos: Server) -> None:
    bearer = token(key(0), FakeClock(time.time()), scope="photos:read photos:write")
    start = len(photos.logs())
    hangups = [
        _post_head(photos.port, bearer, 100) + b'{"title": "be',  # body cut short
        _post_head(photos.port, bearer, 30),  # the head alone
    ]
    for request in hangups:
        with socket.create_connection(("127.0.0.1", photos.port), timeout=10) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(65536) == b""  # nothing sent, the server closed its end
    # Wait (bounded) until the service has dealt with both, however it logs them.
    deadline = time.monotonic() + 15
    seen = ""
    while time.monotonic() < deadline:
        seen = photos.logs()[start:]
        handled = seen.count("client disconnected during POST /photos")
        crashed = seen.count("Exception in ASGI application") + seen.count("unexpected error")
        if handled + crashed >= len(hangups):
            break
        time.sleep(0.05)
    assert "ERROR" not in seen, seen
    assert "Traceback" not in seen, seen
    assert seen.count("client disconnected during POST /photos") == len(hangups), seen
    # The service keeps serving that client.
    created = web.post(
        photos.url + "/photos",
        json={"title": "beach"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
