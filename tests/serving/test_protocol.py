"""serving.protocol: a response's head and body leave in one write, and nothing is lost; the
protocol ``serve()`` runs closes connections past their deadlines and over the caps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from serving.limits import BODY, CLOSING, HEAD, IDLE, ConnectionLimits
from serving.protocol import (
    CoalescingTransport,
    ConnectionGuard,
    GuardedHttpToolsProtocol,
    forget_port,
    guard_at,
    install_guard,
)


class RecordingTransport(asyncio.Transport):
    """A transport that records what is written to it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []
        self.closing = False

    @property
    def writes(self) -> list[bytes]:
        return [data for kind, data in self.events if kind == "write"]

    def write(self, data: Any) -> None:
        self.events.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        self.events.append(("writelines", b"".join(list_of_data)))

    def write_eof(self) -> None:
        self.events.append(("eof", b""))

    def close(self) -> None:
        self.closing = True
        self.events.append(("close", b""))

    def abort(self) -> None:
        self.closing = True
        self.events.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _turn() -> None:
    """Let the event loop run the callbacks already scheduled."""
    await asyncio.sleep(0)


# -- the transport ------------------------------------------------------------------------------

Body = Callable[[RecordingTransport, CoalescingTransport], Awaitable[None]]


def _run(body: Body) -> None:
    """Run ``body(inner, outer)`` in a fresh event loop, ``outer`` wrapping ``inner``."""

    async def main() -> None:
        inner = RecordingTransport()
        await body(inner, CoalescingTransport(inner, asyncio.get_running_loop()))

    asyncio.run(main())


def test_two_writes_leave_as_one() -> None:
    async def body(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert inner.writes == []
        outer.write(b"body")
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        await _turn()
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]

    _run(body)


def test_a_lone_write_leaves_at_the_end_of_the_loop_turn() -> None:
    async def body(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert outer.get_write_buffer_size() == len(b"HTTP/1.1 204 No Content\r\n\r\n")
        await _turn()
        assert inner.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
        assert outer.get_write_buffer_size() == 0

    _run(body)


def test_order_is_kept_across_many_writes() -> None:
    async def body(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        for i in range(5):
            outer.write(b"%d," % i)
        outer.writelines([b"5,", b"6,"])
        outer.write(bytearray(b"7,"))
        outer.write(memoryview(b"8"))
        await _turn()
        assert b"".join(data for _, data in inner.events) == b"0,1,2,3,4,5,6,7,8"
        assert inner.writes[:3] == [b"0,1,", b"2,3,", b"4,"]

    _run(body)


def test_close_and_write_eof_send_what_is_held_first() -> None:
    async def close(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        outer.close()
        assert inner.events == [("write", b"HTTP/1.1 400 Bad Request\r\n\r\n"), ("close", b"")]
        assert outer.is_closing()

    async def write_eof(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"last")
        outer.write_eof()
        assert inner.events == [("write", b"last"), ("eof", b"")]
        await _turn()
        assert len(inner.events) == 2  # nothing written twice

    _run(close)
    _run(write_eof)


def test_abort_drops_what_is_held() -> None:
    async def body(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"partial")
        outer.abort()
        await _turn()
        assert inner.events == [("abort", b"")]

    _run(body)


def test_empty_writes_are_not_held() -> None:
    async def body(inner: RecordingTransport, outer: CoalescingTransport) -> None:
        outer.write(b"")
        assert outer.get_write_buffer_size() == 0
        await _turn()
        assert inner.events == []

    _run(body)


# -- uvicorn's protocol over it -----------------------------------------------------------------


async def small_json_app(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"status":"ok"}'
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _serve(requests: bytes) -> list[bytes]:
    """Feed raw request bytes to the protocol uvicorn runs with ``serve()``; return the writes."""

    async def main() -> list[bytes]:
        config = Config(
            small_json_app,
            http=GuardedHttpToolsProtocol,
            ws="none",
            lifespan="off",
            log_config=None,
        )
        config.load()
        protocol = GuardedHttpToolsProtocol(config, ServerState(), app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(requests)
        for _ in range(20):
            await _turn()
        protocol.connection_lost(None)
        return transport.writes

    return asyncio.run(main())


def test_uvicorn_answers_a_request_in_one_write() -> None:
    writes = _serve(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b'\r\n\r\n{"status":"ok"}')


def test_uvicorn_answers_head_without_a_body_write() -> None:
    # uvicorn writes nothing for a HEAD response's body: the head leaves at the turn's end.
    writes = _serve(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n")


def test_uvicorn_answers_pipelined_requests_in_order() -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writes = _serve(request * 3)
    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in writes)


def test_uvicorn_bad_request_is_written_before_the_connection_closes() -> None:
    writes = _serve(b"NOT HTTP AT ALL\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 400 Bad Request\r\n")


# -- deadlines and caps, with an injected clock --------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Server:
    """Protocols on one uvicorn ServerState whose guard reads ``clock``; nothing is swept but by
    hand (``sweep``)."""

    def __init__(self, app: Any = small_json_app, **limits: Any) -> None:
        self.clock = FakeClock()
        self.limits = ConnectionLimits(
            **{"header_timeout": 10.0, "body_timeout": 10.0, "prefix": "TEST_", **limits}
        )
        self.config = Config(app, http=GuardedHttpToolsProtocol, ws="none", lifespan="off")
        self.config.load()
        self.state = ServerState()
        self.guard = ConnectionGuard(
            self.limits, asyncio.get_running_loop(), idle_timeout=5.0, clock=self.clock
        )
        install_guard(self.state, self.guard)

    def connect(self) -> tuple[GuardedHttpToolsProtocol, RecordingTransport]:
        protocol = GuardedHttpToolsProtocol(
            self.config, self.state, app_state={}, limits=self.limits
        )
        transport = RecordingTransport()
        protocol.connection_made(transport)
        return protocol, transport

    def sweep(self, after: float) -> None:
        self.clock.now += after
        self.guard.sweep()


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await _turn()


def test_a_head_past_its_deadline_gets_408_and_a_close() -> None:
    async def main() -> None:
        server = Server()
        protocol, transport = server.connect()
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        assert protocol.entry.phase == HEAD
        server.sweep(9.9)
        assert transport.events == []
        server.sweep(0.1)
        assert transport.writes[0].startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"connection: close\r\n" in transport.writes[0]
        assert transport.events[-1] == ("close", b"")
        assert protocol.entry.phase == CLOSING
        # Still there at the next deadline (a peer that does not read): aborted.
        server.sweep(1.0)
        assert transport.events[-1] == ("abort", b"")
        protocol.connection_lost(None)
        assert len(server.guard.table) == 0

    asyncio.run(main())


def test_a_body_past_its_deadline_gets_408_and_the_app_a_disconnect() -> None:
    received: list[Any] = []

    async def reading_app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        server = Server(reading_app)
        protocol, transport = server.connect()
        protocol.data_received(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        await _turns()
        assert protocol.entry.phase == BODY
        server.sweep(10.0)
        await _turns()
        assert received[-1] == "http.disconnect"
        assert len(transport.writes) == 1  # the 408, and nothing the application sent after it
        assert transport.writes[0].startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert transport.closing

    asyncio.run(main())


def test_no_408_after_a_response_has_started() -> None:
    async def main() -> None:
        server = Server()  # answers without reading the whole body
        protocol, transport = server.connect()
        protocol.data_received(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        await _turns()
        assert len(transport.writes) == 1
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        server.sweep(10.0)
        assert len(transport.writes) == 1
        assert transport.closing

    asyncio.run(main())


def test_an_idle_connection_is_closed_without_an_answer() -> None:
    async def main() -> None:
        server = Server()
        protocol, transport = server.connect()
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await _turns()
        assert protocol.entry.phase == IDLE
        # The wait for the next request is the guard's, not a keep-alive timer per response.
        assert protocol.timeout_keep_alive_task is None
        server.sweep(5.0)  # uvicorn's keep-alive timeout (shorter than the head deadline)
        assert len(transport.writes) == 1  # the response only
        assert transport.events[-1] == ("close", b"")

    asyncio.run(main())


def test_no_deadline_while_the_server_is_still_answering() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await small_json_app(scope, receive, send)

    async def main() -> None:
        server = Server(slow_app)
        protocol, transport = server.connect()
        # A whole request, then part of the next head, pipelined.
        protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")
        await _turns()
        server.sweep(60.0)  # long past every deadline, but the application is the slow one
        assert transport.events == []
        release.set()
        await _turns()
        assert len(transport.writes) == 1
        # The second head's wait started when the answer went out.
        server.sweep(9.0)
        assert len(transport.writes) == 1
        protocol.data_received(b"Host: x\r\n\r\n")
        await _turns()
        assert len(transport.writes) == 2
        assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in transport.writes)

    asyncio.run(main())


def test_connections_over_a_cap_are_closed_at_once_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = Server(max_connections=3, max_connections_per_address=2)
        first, first_transport = server.connect()
        server.connect()
        with caplog.at_level(logging.WARNING, logger="keyhouse.connections"):
            for _ in range(10):
                _, newest = server.connect()
                assert newest.events == [("close", b"")]
        assert len(server.guard.table) == 2
        assert not first_transport.closing
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1  # rate-limited
        assert "TEST_MAX_CONNECTIONS_PER_ADDRESS=2" in warnings[0]
        assert "127.0.0.1" in warnings[0]
        # One connection gone: one more gets in.
        first.connection_lost(None)
        _, again = server.connect()
        assert again.events == []

    asyncio.run(main())


def test_the_guard_is_found_by_its_listening_port_from_the_first_connection() -> None:
    async def main() -> None:
        server = Server()
        forget_port(8000)
        assert guard_at(8000) is None
        server.connect()  # RecordingTransport: sockname 127.0.0.1:8000
        assert guard_at(8000) is server.guard
        forget_port(8000)

    asyncio.run(main())


def test_refuses_counts_a_connection_over_a_cap_without_admitting_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = Server(max_connections_per_address=1)
        assert not server.guard.refuses("127.0.0.1")
        server.connect()
        with caplog.at_level(logging.WARNING, logger="keyhouse.connections"):
            assert server.guard.refuses("127.0.0.1")
            assert not server.guard.refuses("127.0.0.2")
        assert len(server.guard.table) == 1
        assert "TEST_MAX_CONNECTIONS_PER_ADDRESS=1" in caplog.text

    asyncio.run(main())


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_upgrade_request_is_answered_as_http_without_a_warning() -> None:
    # serve() runs with WebSocket off: an Upgrade header must not let anyone flood the log
    # (uvicorn's own logger, which does not propagate to the root logger).
    handler = ListHandler()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(handler)
    try:
        writes = _serve(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    finally:
        uvicorn_log.removeHandler(handler)
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert [r.getMessage() for r in handler.records] == []
