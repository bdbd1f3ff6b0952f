"""An event loop that takes every waiting connection off the listen queue in one turn.

libuv (under uvloop) accepts one connection per turn of the event loop, to be fair to other
processes sharing the socket. A turn of a busy issuer signs a batch of tokens (~10 ms on these
machines), so it accepted about 100 connections a second: a few hundred slow clients
reconnecting at once waited seconds in the kernel's queue before the server even saw them, and
their deadlines (``serving.limits``) started that much late. Measured with bench scenario 8:
connections still open 12-18 s after ``connect()`` against a 10 s deadline, one ``accept4`` per
10.7 ms in ``strace``.

:class:`DrainingLoop` keeps uvloop and adds, for each listening socket, a reader on a duplicate
of it that accepts up to :data:`MAX_ACCEPTS_PER_TURN` connections whenever it is readable (as
asyncio's own loop does) and hands each to the server's protocol through
``connect_accepted_socket``. libuv itself never listens (the server is created with
``start_serving=False``): one accept path, so connections reach their protocols, and the
connection caps, in the order they were accepted. Running out of descriptors pauses the drain
for a second, as asyncio does, instead of spinning on a queue it cannot empty. A connection
over a connection cap (``serving.protocol``) is closed as soon as it is accepted, before a
transport and a protocol are made for it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import Callable, Iterable
from typing import Any

from serving.protocol import forget_port, guard_at

logger = logging.getLogger("keyhouse.serving")

# As many as the default listen backlog holds: one readable event empties the queue.
MAX_ACCEPTS_PER_TURN = 2048
# How long the drain pauses when the process is out of descriptors (asyncio's ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class Drain:
    """Accepts, on ``loop``, the connections waiting on one listening socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        protocol_factory: ProtocolFactory,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.protocol_factory = protocol_factory
        self.ssl = ssl
        self.refused = 0
        sockname = listener.getsockname()
        self.port: int = sockname[1] if isinstance(sockname, tuple) else 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self.on_readable)

    def on_readable(self) -> None:
        for _ in range(MAX_ACCEPTS_PER_TURN):
            try:
                conn, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause(exc)
                    return
                continue  # the peer gave up before it was accepted (ECONNABORTED and the like)
            guard = guard_at(self.port) if self.port else None
            if guard is not None and isinstance(addr, tuple) and guard.refuses(addr[0]):
                conn.close()  # over a cap: the newest connection is the one closed
                self.refused += 1
                continue
            conn.setblocking(False)
            self._start(conn)

    def _start(self, conn: socket.socket) -> None:
        coro = self.loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl)
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A connection that failed before its protocol ran (a reset, a failed TLS
            # handshake): uvloop has closed it; there is nobody to answer.
            logger.debug("an accepted connection failed to start", exc_info=task.exception())

    def _pause(self, exc: OSError) -> None:
        logger.warning(
            "cannot accept connections (%s); pausing the accept loop for %gs",
            os.strerror(exc.errno or 0),
            ACCEPT_RETRY_DELAY,
        )
        self.loop.remove_reader(self.listener.fileno())
        self._retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self.loop.add_reader(self.listener.fileno(), self.on_readable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.port:
            forget_port(self.port)
        if self._retry is not None:
            self._retry.cancel()
        else:
            self.loop.remove_reader(self.listener.fileno())
        self.listener.close()


class DrainingServer(asyncio.AbstractServer):
    """The loop's own server, with its drains closed when it is."""

    def __init__(self, inner: asyncio.AbstractServer, drains: Iterable[Drain]) -> None:
        self.inner = inner
        self.drains = list(drains)
        self._closed = asyncio.Event()

    @property
    def sockets(self) -> Any:
        return getattr(self.inner, "sockets", ())

    def close(self) -> None:
        for drain in self.drains:
            drain.close()
        self.inner.close()
        self._closed.set()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.inner.get_loop()

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    async def start_serving(self) -> None:
        """Serving already (through the drains); libuv's own accepting stays off."""

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self.inner.wait_closed()


def add_drains(
    loop: asyncio.AbstractEventLoop,
    server: asyncio.AbstractServer,
    protocol_factory: ProtocolFactory,
    ssl: ssl_module.SSLContext | None,
    backlog: int,
) -> DrainingServer:
    """``server`` (created not serving) listening through a :class:`Drain` on a duplicate of
    each of its sockets."""
    drains = []
    for sock in getattr(server, "sockets", ()) or ():
        listener = socket.socket(fileno=os.dup(sock.fileno()))
        listener.listen(backlog)
        drains.append(Drain(loop, listener, protocol_factory, ssl))
    return DrainingServer(server, drains)


try:
    import uvloop
except ImportError:  # pragma: no cover (uvloop is part of uvicorn[standard])
    uvloop = None  # type: ignore[assignment]


if uvloop is not None:

    class DrainingLoop(uvloop.Loop):
        """uvloop, whose servers accept every waiting connection in a turn."""

        async def create_server(  # type: ignore[override]
            self, protocol_factory: ProtocolFactory, *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            # libuv never listens (start_serving=False): the drain is the only accept path, so
            # connections reach their protocols, and the caps, in the order they were accepted.
            kwargs["start_serving"] = False
            server = await super().create_server(protocol_factory, *args, **kwargs)
            return add_drains(
                self, server, protocol_factory, kwargs.get("ssl"), kwargs.get("backlog", 100)
            )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop ``serve()`` runs (uvicorn's ``loop=`` takes it as ``module:function``)."""
    if uvloop is None:  # pragma: no cover
        return asyncio.new_event_loop()
    return DrainingLoop()
