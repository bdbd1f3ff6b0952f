"""A real ``issuer serve`` process fed what a hostile or broken client sends, over raw sockets:
malformed ``Authorization: Basic`` values, scope strings with stray spaces, and clients that
hang up in the middle of a request (issue 13, points 5, 6 and 8)."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
MAX_FAILURES_PER_ADDRESS = 6
ENDPOINTS = ("/token", "/revoke", "/introspect")


@dataclass
class Issuer:
    stack: Stack
    server: Server
    client: dict[str, Any]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def issuer(module_stack: Stack) -> Iterator[Issuer]:
    stack = module_stack
    client = stack.create_client(
        scope="photos:read photos:write",
        audiences=["photos"],
        grants=["client_credentials", "password", "refresh_token"],
    )
    stack.create_user("alice", PASSWORD, "photos:read photos:write")
    server = stack.issuer(
        ISSUER_LOG_LEVEL="debug",
        ISSUER_LOGIN_MAX_FAILURES_PER_ADDRESS=str(MAX_FAILURES_PER_ADDRESS),
    ).start()
    yield Issuer(stack, server, client)
    server.stop()


def exchange(port: int, request: bytes, *, source: str = "127.0.0.1") -> Reply:
    """One request as raw bytes from ``source`` (a loopback address: the throttle counts per
    peer address), read to the end of the connection (``Connection: close``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body)


def post(path: str, body: bytes, *extra_headers: bytes, content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + b"".join(h + b"\r\n" for h in extra_headers)
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length
        + body
    )


def form_for(path: str) -> bytes:
    return b"grant_type=client_credentials" if path == "/token" else b"token=x"


def invalid_client_errors(server: Server) -> float:
    text = web.get(server.url + "/metrics", timeout=10).text
    found = re.search(
        r'^keyhouse_issuer_token_errors_total\{error="invalid_client"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


# -- point 5: malformed Basic credentials ------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_non_ascii_basic_credential_is_401_invalid_client(issuer: Issuer, path: str) -> None:
    """``curl -X POST URL/token -H $'Authorization: Basic \\xe9' -d grant_type=...``: was a 500."""
    source = f"127.0.0.{10 + ENDPOINTS.index(path)}"
    reply = exchange(
        issuer.server.port, post(path, form_for(path), b"Authorization: Basic \xe9"), source=source
    )
    assert reply.status == 401, reply
    assert reply.json()["error"] == "invalid_client"
    # RFC 6749 §5.2: the client tried Basic, so the challenge is Basic.
    assert reply.headers["www-authenticate"] == 'Basic realm="keyhouse"'
    assert reply.headers["cache-control"] == "no-store"


MALFORMED = [
    b"Basic \xe9\xe9\xe9\xe9",
    b"Basic !!!!",
    b"Basic " + base64.b64encode(b"no-colon"),
    b"Basic " + base64.b64encode(b"c-%zz:secret"),
    b"Basic " + base64.b64encode(b"c-x:%e9%28"),
    b"Basic " + base64.b64encode(b"\xff\xfe:secret"),
    b"Basic " + base64.b64encode(b":secret"),
    b"Basic " + base64.b64encode(b"c-\x00:secret"),
]


@pytest.mark.parametrize("header", MALFORMED)
def test_every_malformed_basic_shape_is_401_invalid_client(issuer: Issuer, header: bytes) -> None:
    source = f"127.0.0.{20 + MALFORMED.index(header)}"
    request = post("/token", form_for("/token"), b"Authorization: " + header)
    reply = exchange(issuer.server.port, request, source=source)
    assert reply.status == 401, reply
    assert reply.json()["error"] == "invalid_client"
    assert reply.headers["www-authenticate"] == 'Basic realm="keyhouse"'


def test_malformed_basic_is_throttled_per_address_audited_and_counted(issuer: Issuer) -> None:
    source = "127.0.0.40"
    before = invalid_client_errors(issuer.server)
    statuses = []
    for i in range(MAX_FAILURES_PER_ADDRESS + 1):
        path = ENDPOINTS[i % 3]
        request = post(path, form_for(path), b"Authorization: Basic \xe9")
        statuses.append(exchange(issuer.server.port, request, source=source).status)
    # Every attempt counted against the address; past the limit it is blocked.
    assert statuses == [401] * MAX_FAILURES_PER_ADDRESS + [429]
    # Two of the six 401s and the 429 were at /token (0, 3 and 6).
    assert invalid_client_errors(issuer.server) - before == 2
    # Another address is not blocked, and good credentials work from it.
    assert issuer.stack.token(issuer.client)["token_type"] == "Bearer"
    audit = json.loads(issuer.stack.cli("audit", "--json", "--limit", "1000").stdout)
    mine = [e for e in audit if e["address"] == source]
    failed = [e for e in mine if e["event"] == "client_auth_failed"]
    assert len(failed) == MAX_FAILURES_PER_ADDRESS
    assert {e["detail"] for e in failed} == {"missing or malformed client credentials"}
    assert [e["event"] for e in mine].count("auth_throttled") == 1


# -- point 6: scope = scope-token *( SP scope-token ) -------------------------------------------

STRAY_SPACES = ["photos:read  photos:write", " photos:read", "photos:read "]


def test_a_scope_with_stray_spaces_is_invalid_scope_on_every_grant(issuer: Issuer) -> None:
    url = issuer.server.url + "/token"
    auth = (issuer.client["client_id"], issuer.client["client_secret"])
    login = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    first = web.post(url, data=login, auth=auth, timeout=10)
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    for scope in STRAY_SPACES:
        for form in (
            {"grant_type": "client_credentials"},
            login,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
        ):
            response = web.post(url, data={**form, "scope": scope}, auth=auth, timeout=10)
            assert response.status_code == 400, (scope, form["grant_type"], response.text)
            assert response.json()["error"] == "invalid_scope"
    # Exactly one space between tokens is the grammar; the refused refreshes spent nothing.
    ok = web.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "scope": "photos:read photos:write",
        },
        auth=auth,
        timeout=10,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["scope"] == "photos:read photos:write"


@pytest.mark.parametrize("scope", [*STRAY_SPACES, "photos:read\tphotos:write"])
def test_the_cli_refuses_a_scope_with_stray_spaces(issuer: Issuer, scope: str) -> None:
    stack = issuer.stack
    created = stack.cli(
        "clients", "create", "--name", "x", "--audience", "photos", "--scope", scope, check=False
    )
    user = stack.cli(
        "users",
        "create",
        "bob",
        "--password-stdin",
        "--scope",
        scope,
        input=PASSWORD + "\n",
        check=False,
    )
    for result in (created, user):
        assert result.returncode != 0
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("issuer: error: scope"), result.stderr
        assert "Traceback" not in result.stderr


# -- point 8: a client hanging up is not a server error -----------------------------------------


def test_a_client_hanging_up_mid_request_is_not_logged_as_an_error(issuer: Issuer) -> None:
    server = issuer.server
    start = len(server.logs())
    hangups = []
    for path in ENDPOINTS:
        # A body shorter than its Content-Length, then a closed socket; and the head alone.
        hangups.append(post(path, b"grant_type=cli", content_length=100))
        hangups.append(post(path, b"", content_length=30))
    for request in hangups:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(65536) == b""  # the server closed its end and sent nothing
    # Wait (bounded) until the server has dealt with every hang-up, however it logs them.
    deadline = time.monotonic() + 15
    seen = ""
    while time.monotonic() < deadline:
        seen = server.logs()[start:]
        handled = seen.count("client disconnected during POST")
        crashed = seen.count("Exception in ASGI application")
        if handled + crashed >= len(hangups):
            break
        time.sleep(0.05)
    assert "ERROR" not in seen, seen
    assert "Traceback" not in seen, seen
    assert "unexpected error" not in seen, seen
    for path in ENDPOINTS:
        assert seen.count(f"client disconnected during POST {path}") == 2, seen
    # The server keeps serving.
    assert issuer.stack.token(issuer.client)["token_type"] == "Bearer"
