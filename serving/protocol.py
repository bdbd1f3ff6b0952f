"""uvicorn's httptools protocol, answering a response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two ``send()`` calls and, with ``TCP_NODELAY``, two
TCP segments for every response, each costing the kernel a full trip through the TCP stack on
the server's core. Keyhouse answers with small JSON documents, so :class:`CoalescingTransport`
holds each write back until the next one (or the end of the event loop's turn, whichever comes
first) and sends the two together. Measured with ``perf stat`` on the issuer under
``POST /token`` load: kernel cycles per request fell from ~135k to ~85k.

:class:`GuardedHttpToolsProtocol`, the class ``serve()`` runs, adds deadlines on reading each
request's head and body and caps on open connections per process and per peer address (the
policy is ``serving.limits``; this is the glue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from serving.limits import (
    ADDRESS_CAP,
    BODY,
    CLOSING,
    HEAD,
    PROCESS_CAP,
    Clock,
    ConnectionLimits,
    ConnectionTable,
    Deadline,
    WarningThrottle,
)


class CoalescingTransport(asyncio.Transport):
    """Wraps a transport so that two consecutive writes leave in one.

    A write is held until the next write, ``close()``, ``write_eof()`` or the end of the current
    event-loop turn (a ``call_soon``), so nothing waits longer than one turn and order is kept.
    ``abort()`` drops what is held, as it drops the transport's own buffer.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.flush()
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))


# -- deadlines and caps (the policy is serving.limits) --------------------------------

logger = logging.getLogger("keyhouse.connections")

# At most one warning (or info line) per kind of event in this many seconds.
LOG_INTERVAL = 10.0

_CAP_VARIABLE = {PROCESS_CAP: "MAX_CONNECTIONS", ADDRESS_CAP: "MAX_CONNECTIONS_PER_ADDRESS"}


def _timeout_response(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = b"Request Timeout"
    content = [b"HTTP/1.1 408 Request Timeout\r\n"]
    for name, value in default_headers:
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(content)


class ConnectionGuard:
    """One process's :class:`ConnectionTable`, swept for expired deadlines while it is not empty
    (one ``call_later`` at a time, not one timer per request), and its rate-limited log."""

    def __init__(
        self,
        limits: ConnectionLimits,
        loop: asyncio.AbstractEventLoop,
        idle_timeout: float,
        clock: Clock | None = None,
    ) -> None:
        self.limits = limits
        self.loop = loop
        self.clock = clock or loop.time
        self.table = ConnectionTable(limits, self.clock, idle_timeout)
        self.throttle = WarningThrottle(LOG_INTERVAL, self.clock)
        self.port = 0  # the port its server listens on, from its first connection
        self._sweep_handle: asyncio.TimerHandle | None = None

    def admit(self, address: str, owner: GuardedHttpToolsProtocol) -> Deadline | None:
        entry = self.table.admit(address, owner)
        if isinstance(entry, Deadline):
            if self._sweep_handle is None:
                self._sweep_handle = self.loop.call_later(self.limits.sweep_interval, self.sweep)
            return entry
        self._refused(entry, address)
        return None

    def refuses(self, address: str) -> bool:
        """Whether a connection from ``address`` is over a cap (counted and logged as refused):
        the accept loop asks before it makes a transport and a protocol for it."""
        cap = self.table.refusal(address)
        if cap is None:
            return False
        self._refused(cap, address)
        return True

    def _refused(self, cap: str, address: str) -> None:
        count = self.throttle.event(cap)
        if count is None:
            return
        limits = self.limits
        if cap == PROCESS_CAP:
            what = f"{len(self.table)} connections open in this process"
            limit = limits.max_connections
        else:
            what = f"{self.table.per_address.get(address, 0)} connections open from {address}"
            limit = limits.max_connections_per_address
        logger.warning(
            "connection cap reached: %s (%s%s=%d); the newest connection is closed"
            " (%d refused since the last such warning)",
            what,
            limits.prefix,
            _CAP_VARIABLE[cap],
            limit,
            count,
        )

    def release(self, entry: Deadline) -> None:
        self.table.release(entry)

    def sweep(self) -> None:
        # The next sweep is scheduled first: nothing below can stop the deadlines from running.
        self._sweep_handle = (
            self.loop.call_later(self.limits.sweep_interval, self.sweep)
            if self.table.open
            else None
        )
        timed_out = {HEAD: 0, BODY: 0}
        for entry in self.table.expired():
            owner = entry.owner
            assert isinstance(owner, GuardedHttpToolsProtocol)
            try:
                phase = owner.deadline_passed()
            except Exception:  # a transport in a state it should not be in: drop it
                logger.debug("aborting a connection past its deadline", exc_info=True)
                owner.transport.abort()
                self.table.release(entry)
                continue
            if phase in timed_out:
                timed_out[phase] += 1
        for phase, n in timed_out.items():
            if n:
                self._timed_out(phase, n)

    def _timed_out(self, phase: int, n: int) -> None:
        kind = "head" if phase == HEAD else "body"
        count = self.throttle.event(kind, n)
        if count is None:
            return
        limits = self.limits
        timeout = limits.header_timeout if phase == HEAD else limits.body_timeout
        variable = "HEADER_TIMEOUT" if phase == HEAD else "BODY_TIMEOUT"
        logger.info(
            "closed %d connection(s) that did not send a request %s within %gs (%s%s)",
            count,
            kind,
            timeout,
            limits.prefix,
            variable,
        )


# The guard rides on uvicorn's per-server state object: one attribute lookup per connection.
_GUARD = "keyhouse_connection_guard"
# And the accept loop (serving.accept) finds it by the listening port: a connection over a cap
# is closed there, before a transport and a protocol are made for it (under a flood of
# reconnecting clients that is most of the cost of refusing one).
_GUARDS_BY_PORT: dict[int, ConnectionGuard] = {}


def guard_at(port: int) -> ConnectionGuard | None:
    """The guard of this process's server listening on ``port`` (known from its first
    connection on)."""
    return _GUARDS_BY_PORT.get(port)


def forget_port(port: int) -> None:
    _GUARDS_BY_PORT.pop(port, None)


def guard_for(
    server_state: ServerState,
    limits: ConnectionLimits,
    loop: asyncio.AbstractEventLoop,
    idle_timeout: float,
) -> ConnectionGuard:
    """The process's guard for this uvicorn server (made at its first connection)."""
    guard: ConnectionGuard | None = getattr(server_state, _GUARD, None)
    if guard is None:
        guard = ConnectionGuard(limits, loop, idle_timeout)
        setattr(server_state, _GUARD, guard)
    return guard


def install_guard(server_state: ServerState, guard: ConnectionGuard) -> None:
    """Use ``guard`` for this server's connections (tests: an injected clock)."""
    setattr(server_state, _GUARD, guard)


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The protocol ``serve()`` runs: coalesced writes, request deadlines, connection caps.

    ``limits`` comes through ``functools.partial`` (a worker process gets it pickled with
    uvicorn's config). Per request this adds a call to the connection's :class:`Deadline` at
    each of the parser's four steps; uvicorn's own keep-alive timer (a ``call_later`` and a
    ``cancel`` per response) is replaced by the same deadline, so no timer is made per request:
    timed in a loop under uvloop, the four steps cost less than the timer did (~1.5 us against
    ~4 us, on a busy machine).
    """

    entry: Deadline

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard_for(
            server_state, limits or ConnectionLimits(), self.loop, config.timeout_keep_alive
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        if not guard.port and self.server and self.server[1]:
            guard.port = self.server[1]
            _GUARDS_BY_PORT[guard.port] = guard
        address = self.client[0] if self.client else ""
        entry = self.guard.admit(address, self)
        if entry is None:
            # Refused: the newest connection is the one closed. Its Deadline is not counted.
            self.entry = self.guard.table.deadline(address, self)
            self.entry.detach()
            self.transport.close()
            return
        self.entry = entry

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.guard.release(self.entry)

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self.entry.head_begun()

    def on_headers_complete(self) -> None:
        HttpToolsProtocol.on_headers_complete(self)
        self.entry.head_done()

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self.entry.body_done()

    def on_response_complete(self) -> None:
        # uvicorn's own (0.30 to 0.54), but the wait for the next request is the connection's
        # Deadline, not a keep-alive timer armed per response.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            self.entry.response_done(busy=True)
        else:
            self.entry.response_done()

    def _unsupported_upgrade_warning(self) -> None:
        # serve() turns WebSocket off, so uvicorn would log two warnings for every request that
        # asks to upgrade (anyone could flood the log with them). The request is answered as
        # plain HTTP; one debug line is enough.
        logger.debug("upgrade request answered as plain HTTP (no WebSocket here)")

    def deadline_passed(self) -> int:
        """Called by the sweep when this connection's deadline has passed: close it (with a 408
        when no response has started for the request awaited) unless the wait is the server's
        doing, which postpones it. Returns the phase it was closed in (-1: postponed)."""
        entry = self.entry
        transport = self.transport
        phase = entry.phase
        if phase == CLOSING or transport.is_closing():
            transport.abort()  # closed at a deadline already, and still not gone
            return CLOSING
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if (
            self.pipeline
            or (phase == BODY and self.flow.read_paused)
            or (phase != BODY and answering)
        ):
            entry.postpone()
            return -1
        if phase == HEAD or (phase == BODY and not cycle.response_started):
            transport.write(_timeout_response(self.server_state.default_headers))
            if phase == BODY:
                # The application waits in receive(): it gets http.disconnect, and whatever it
                # sends now is dropped (as after connection_lost).
                cycle.disconnected = True
                cycle.message_event.set()
        transport.close()
        entry.closing(max(1.0, self.guard.limits.sweep_interval))
        return phase
