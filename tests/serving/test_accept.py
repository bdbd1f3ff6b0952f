"""serving.accept: one turn of the loop takes every waiting connection off the listen queue."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

import pytest

from serving import accept
from serving.limits import ConnectionLimits
from serving.protocol import _GUARDS_BY_PORT, ConnectionGuard, guard_at

uvloop = pytest.importorskip("uvloop")

WAITING = 60


class Counting(asyncio.Protocol):
    made: list[Counting]

    def __init__(self, made: list[Counting]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self)
        transport.write(b"hello")  # type: ignore[attr-defined]  # (uvloop's is no subclass)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = accept.new_event_loop()
    yield loop
    loop.close()


def _turns(loop: asyncio.AbstractEventLoop, n: int) -> None:
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


def _serve_and_queue(
    loop: asyncio.AbstractEventLoop, made: list[Counting]
) -> tuple[asyncio.AbstractServer, list[socket.socket]]:
    server = loop.run_until_complete(
        loop.create_server(lambda: Counting(made), "127.0.0.1", 0, backlog=256)
    )
    port = server.sockets[0].getsockname()[1]
    # The kernel completes each handshake and queues it: WAITING connections wait for accept().
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(WAITING)]
    return server, clients


def _close(
    loop: asyncio.AbstractEventLoop, server: asyncio.AbstractServer, clients: list[socket.socket]
) -> None:
    for c in clients:
        c.close()
    server.close()
    loop.run_until_complete(server.wait_closed())


def test_one_readable_event_accepts_every_waiting_connection(
    loop: asyncio.AbstractEventLoop,
) -> None:
    made: list[Counting] = []
    server, clients = _serve_and_queue(loop, made)
    try:
        # Plain uvloop (libuv) takes one connection a turn: after a handful of turns, a handful.
        _turns(loop, 5)
        assert len(made) == WAITING
        for c in clients:
            c.settimeout(5)
            assert c.recv(5) == b"hello"
    finally:
        _close(loop, server, clients)


def test_plain_uvloop_takes_one_a_turn() -> None:
    """The reason for the module: without the drain, the same few turns accept a few."""
    loop = uvloop.Loop()
    made: list[Counting] = []
    server, clients = _serve_and_queue(loop, made)
    try:
        _turns(loop, 5)
        assert len(made) < WAITING
    finally:
        _close(loop, server, clients)
        loop.close()


def test_closing_the_server_closes_its_drains(loop: asyncio.AbstractEventLoop) -> None:
    made: list[Counting] = []
    server, clients = _serve_and_queue(loop, made)
    assert isinstance(server, accept.DrainingServer)
    drains = server.drains
    assert drains
    _close(loop, server, clients)
    assert all(d.listener.fileno() == -1 for d in drains)


def test_out_of_descriptors_pauses_the_drain_instead_of_spinning(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[Counting] = []
    server, clients = _serve_and_queue(loop, made)
    assert isinstance(server, accept.DrainingServer)
    drain = server.drains[0]
    calls = 0

    class Exhausted(socket.socket):
        def accept(self) -> tuple[socket.socket, object]:
            nonlocal calls
            calls += 1
            raise OSError(errno.EMFILE, "Too many open files")

    real = drain.listener
    drain.listener = Exhausted(fileno=real.detach())
    try:
        with caplog.at_level("WARNING", logger="keyhouse.serving"):
            drain.on_readable()
        assert calls == 1
        assert drain._retry is not None
        assert "pausing the accept loop" in caplog.text
    finally:
        _close(loop, server, clients)


def test_a_connection_over_a_cap_is_closed_before_a_protocol_is_made(
    loop: asyncio.AbstractEventLoop,
) -> None:
    made: list[Counting] = []
    server, clients = _serve_and_queue(loop, made)
    assert isinstance(server, accept.DrainingServer)
    port = server.sockets[0].getsockname()[1]
    limits = ConnectionLimits(max_connections_per_address=WAITING // 2, prefix="TEST_")
    guard = ConnectionGuard(limits, loop, idle_timeout=5.0)
    for _ in range(WAITING // 2):  # half the cap already taken by connections counted in
        guard.table.admit("127.0.0.1", object())
    guard.port = port
    _GUARDS_BY_PORT[port] = guard
    try:
        _turns(loop, 5)
        assert made == []
        assert server.drains[0].refused == WAITING
        for c in clients:
            c.settimeout(5)
            assert c.recv(5) == b""  # closed without a word
    finally:
        _close(loop, server, clients)
    assert guard_at(port) is None  # closing the server forgets it


def test_the_drain_is_the_only_accept_path(loop: asyncio.AbstractEventLoop) -> None:
    """libuv's own accepting stays off: with the drain's reader gone, nothing is accepted (two
    paths would let a later connection reach the caps before an earlier one)."""
    made: list[Counting] = []
    server = loop.run_until_complete(
        loop.create_server(lambda: Counting(made), "127.0.0.1", 0, backlog=256)
    )
    assert isinstance(server, accept.DrainingServer)
    assert server.is_serving()
    drain = server.drains[0]
    loop.remove_reader(drain.listener.fileno())  # the listening socket stays open and listening
    port = server.sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        _turns(loop, 5)
        assert made == []
        drain.on_readable()
        _turns(loop, 5)
        assert len(made) == 5
    finally:
        loop.add_reader(drain.listener.fileno(), drain.on_readable)
        _close(loop, server, clients)
    assert not server.is_serving()
