"""Slow and idle clients against real servers (issue 13, point 1): deadlines and connection caps.

Each server runs with short deadlines (1 s) so the tests are quick; every wait below is for an
event (bytes arriving, the connection closing) with a generous timeout, never a duration.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

PATIENCE = 30.0  # how long a test waits for an event before it fails
TRICKLE = 0.2  # seconds between two bytes of a trickled head or body


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The issuer and a resource service, both with 1 s deadlines."""
    stack = Stack(tmp_path_factory.mktemp("slow"))
    try:
        stack.issuer(ISSUER_HEADER_TIMEOUT="1", ISSUER_BODY_TIMEOUT="1").start()
        stack.resource("photos", RESOURCE_HEADER_TIMEOUT="1", RESOURCE_BODY_TIMEOUT="1").start()
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def servers(slow_stack: Stack) -> dict[str, Server]:
    issuer, photos = slow_stack.servers
    return {"issuer": issuer, "photos": photos}


@pytest.fixture(scope="module")
def write_token(slow_stack: Stack) -> str:
    client = slow_stack.create_client(scope="photos:write", audiences=["photos"])
    return str(slow_stack.token(client, scope="photos:write")["access_token"])


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(PATIENCE)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails after PATIENCE)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def trickle(sock: socket.socket, first: bytes, byte: bytes) -> bytes:
    """Send ``first``, then ``byte`` every TRICKLE seconds until the server answers or closes;
    return all it sent before closing."""
    sock.sendall(first)
    give_up = time.monotonic() + PATIENCE
    while time.monotonic() < give_up:
        readable, _, _ = select.select([sock], [], [], TRICKLE)
        if readable:
            return read_until_closed(sock)
        try:
            sock.sendall(byte)
        except (BrokenPipeError, ConnectionResetError):
            return read_until_closed(sock)
    pytest.fail("the server neither answered nor closed a trickling connection")


def is_open(sock: socket.socket) -> bool:
    """True when the server has not closed this connection (nothing to read, no EOF)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def wait_for_log(server: Server, needle: str) -> str:
    give_up = time.monotonic() + PATIENCE
    while time.monotonic() < give_up:
        logs = server.logs()
        if needle in logs:
            return logs
        time.sleep(0.05)
    pytest.fail(f"{needle!r} never appeared in the log:\n{server.logs()[-3000:]}")


def get(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One request on an open connection; the response's head and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(v for k, v in _headers(head) if k == b"content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in lines)]


# -- deadlines ----------------------------------------------------------------------------------


def body_request(name: str, token: str) -> bytes:
    if name == "issuer":
        return (
            b"POST /token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
    return (
        b"POST /photos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )


@pytest.mark.parametrize("name", ["issuer", "photos"])
def test_a_trickled_head_gets_408_and_is_closed(servers: dict[str, Server], name: str) -> None:
    # A byte every 0.2 s: never idle for long, yet the head is not complete within 1 s.
    with connect(servers[name]) as sock:
        answer = trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("name", ["issuer", "photos"])
def test_a_trickled_body_gets_408_and_is_closed(
    servers: dict[str, Server], write_token: str, name: str
) -> None:
    with connect(servers[name]) as sock:
        answer = trickle(sock, body_request(name, write_token), b"a")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # nothing from the application after it


def test_a_body_trickled_after_the_answer_gets_no_second_answer(
    servers: dict[str, Server],
) -> None:
    # photos answers 401 to a bad token without reading the body: the connection is still
    # closed when the body does not arrive, but with no 408 after the response already sent.
    with connect(servers["photos"]) as sock:
        answer = trickle(sock, body_request("photos", "not-a-token"), b"a")
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer


@pytest.mark.parametrize("name", ["issuer", "photos"])
def test_an_idle_keep_alive_connection_is_closed(servers: dict[str, Server], name: str) -> None:
    with connect(servers[name]) as sock:
        assert get(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        # No next request: the server closes, without an answer to a request never sent.
        assert read_until_closed(sock) == b""


def test_a_connection_that_never_sends_a_byte_is_closed(servers: dict[str, Server]) -> None:
    with connect(servers["issuer"]) as sock:
        assert read_until_closed(sock) == b""


def test_the_head_deadline_restarts_with_each_request(servers: dict[str, Server]) -> None:
    # Four requests on one connection, each head sent in two parts: the connection lives well
    # past the 1 s deadline, and every request is answered.
    with connect(servers["issuer"]) as sock:
        for _ in range(4):
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.3)
            sock.sendall(b"Host: x\r\n\r\n")
            data = b""
            while b'"status"' not in data:
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data


def test_a_whole_request_is_answered_normally(servers: dict[str, Server]) -> None:
    for server in servers.values():
        response = web.get(server.url + "/healthz", timeout=PATIENCE)
        assert response.status_code == 200


# -- caps ---------------------------------------------------------------------------------------

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # a head that never ends


@pytest.fixture
def capped(stack: Stack) -> Server:
    """An issuer taking at most 3 connections per address and 8 in all, with deadlines long
    enough that nothing the tests hold open expires meanwhile."""
    return stack.issuer(
        ISSUER_MAX_CONNECTIONS="8",
        ISSUER_MAX_CONNECTIONS_PER_ADDRESS="3",
        ISSUER_HEADER_TIMEOUT="60",
        ISSUER_BODY_TIMEOUT="60",
    ).start()


def hold(server: Server, source: str, n: int) -> list[socket.socket]:
    """``n`` connections from ``source``, each with half a request head sent."""
    socks = [connect(server, source) for _ in range(n)]
    for sock in socks:
        sock.sendall(HALF_HEAD)
    return socks


def finish(sock: socket.socket) -> bytes:
    """Complete the half-sent head; the response."""
    sock.sendall(b"\r\n")
    data = b""
    while b'"status"' not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_the_per_address_cap_closes_the_newest_connection(capped: Server) -> None:
    held = hold(capped, "127.0.0.2", 3)
    try:
        with connect(capped, "127.0.0.2") as newest:
            assert read_until_closed(newest) == b""  # refused: closed at once, nothing sent
        logs = wait_for_log(capped, "ISSUER_MAX_CONNECTIONS_PER_ADDRESS=3")
        assert "127.0.0.2" in logs
        # The three established ones are still served.
        assert all(is_open(sock) for sock in held)
        assert finish(held[0]).startswith(b"HTTP/1.1 200 OK\r\n")
        # The cap is per address: 127.0.0.3 and 127.0.0.1 still get in, and are served.
        others = hold(capped, "127.0.0.3", 3)
        try:
            for sock in others:
                assert finish(sock).startswith(b"HTTP/1.1 200 OK\r\n")
            assert web.get(capped.url + "/healthz", timeout=PATIENCE).status_code == 200
        finally:
            for sock in others:
                sock.close()
    finally:
        for sock in held:
            sock.close()
    # Closed connections are counted out: 127.0.0.2 gets in again.
    give_up = time.monotonic() + PATIENCE
    while True:
        with connect(capped, "127.0.0.2") as sock:
            # Until the server has counted the closes, it refuses the newcomer: closed at once,
            # seen here as EOF, a reset or (writing after the close) a broken pipe.
            try:
                sock.sendall(HALF_HEAD)
                if finish(sock).startswith(b"HTTP/1.1 200 OK\r\n"):
                    break
            except (AssertionError, ConnectionError):
                pass
        assert time.monotonic() < give_up, "127.0.0.2 was never let in again"
        time.sleep(0.05)


def test_the_process_cap_closes_the_newest_and_spares_established_clients(
    capped: Server,
) -> None:
    with web.Client(base_url=capped.url, timeout=PATIENCE) as legit:
        assert legit.get("/healthz").status_code == 200  # its connection is established first
        held = hold(capped, "127.0.0.2", 3) + hold(capped, "127.0.0.3", 3)
        held += hold(capped, "127.0.0.4", 1)  # 8 with the legitimate client's
        try:
            with connect(capped, "127.0.0.5") as newest:
                assert read_until_closed(newest) == b""
            wait_for_log(capped, "ISSUER_MAX_CONNECTIONS=8")
            assert all(is_open(sock) for sock in held)
            # The client that was already connected keeps being served on its connection.
            for _ in range(5):
                assert legit.get("/healthz").status_code == 200
        finally:
            for sock in held:
                sock.close()
