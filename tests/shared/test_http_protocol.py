"""shared.http_protocol: a response's head and body leave in one write, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from shared.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


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
        config = Config(small_json_app, http=CoalescingHttpToolsProtocol, lifespan="off")
        config.load()
        protocol = CoalescingHttpToolsProtocol(config, ServerState(), app_state={})
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
