"""One process's side of ``GET /events``: the poller that finds new events in the store, the
open subscriptions it hands them to, and the signing of each event when it is first served.

Every replica serves every event: the poller reads ``security_events`` after the last ``seq`` it
saw, every ``ISSUER_EVENTS_POLL_INTERVAL`` seconds, and at once when this process records one
(the store's ``notify``, from whichever thread recorded it; the transaction may still be
committing, so a wake-up that finds nothing looks again a few times within milliseconds).

A subscription first reads the stored backlog after its resume point, then takes live events
from its queue, skipping any it has sent already: it registers before reading the backlog, so
an event committed meanwhile is in one or the other (the store commits in ``seq`` order). The
poller starts after the newest event it reads at its start, or after the newest a stream read
before its backlog if that came first (a subscriber as the process starts), whichever is lower:
an event recorded between that stream's backlog and the poller's start is still pushed. A
subscriber that falls ``QUEUE_SIZE`` events behind is ended; it reconnects with
``Last-Event-ID`` and reads the rest from the store.

Events are stored unsigned and signed here with the key that signs now (one signature per event
per process, cached by ``seq``); a key-revoked event reloads the key ring first, so it is never
signed with the key it revokes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread

from issuer.events import sse
from issuer.events.store import PAGE, EventStore, StoredEvent
from issuer.keys import KeyRing
from issuer.metrics import IssuerMetrics
from issuer.outage import DatabaseOutage, unavailability
from shared import security_events as se
from shared.errors import TemporarilyUnavailable

logger = logging.getLogger("keyhouse.issuer.events")

QUEUE_SIZE = 1000  # live events a subscriber may be behind before it is ended
SIGNED_CACHE = 4096  # signed events kept per process
PURGE_EVERY = 300.0  # seconds between two purges of expired events
WAKE_RETRIES = (0.005, 0.02, 0.05)  # looks again after a wake-up that found nothing


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self.ended = False

    def push(self, event: StoredEvent | None) -> None:
        if self.ended:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:  # too far behind: end it (it resumes from the store)
            self.ended = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class Broadcaster:
    def __init__(
        self,
        store: EventStore,
        keyring: KeyRing,
        metrics: IssuerMetrics,
        *,
        max_subscribers: int,
        heartbeat: float,
        poll_interval: float,
        outage: DatabaseOutage | None = None,
    ) -> None:
        self.store = store
        self.outage = outage  # the process's outage record: one warning per outage, shared
        self.keyring = keyring
        self.metrics = metrics
        self.max_subscribers = max_subscribers
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self._subscriptions: set[Subscription] = set()
        self._signed: OrderedDict[int, str] = OrderedDict()
        # The last seq handed to the subscriptions; None until the poller or a stream has read
        # the store's newest (see run()).
        self._head: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._failing = False  # the last poll failed (logged once per outage)

    # --- the poller ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled (the app's lifespan owns this task)."""
        self._loop = asyncio.get_running_loop()
        self.store.notify = self.wake
        newest = await anyio.to_thread.run_sync(self.store.newest)
        # A stream that read its backlog before this read (a subscriber as the process starts)
        # set the head to what it read first: an event recorded in between is still pushed.
        self._head = newest if self._head is None else min(self._head, newest)
        purged_at = self._loop.time()
        while True:
            woken = False
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that arrives as the event is set (the lifespan's cancel at shutdown, right after
            # an event was recorded): the loop went on polling and the shutdown waited forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
                woken = True
            self._wake.clear()
            try:
                found = await self._poll()
                for delay in WAKE_RETRIES if woken and not found else ():
                    await asyncio.sleep(delay)
                    if await self._poll():
                        break
                if self._loop.time() - purged_at > PURGE_EVERY:
                    purged_at = self._loop.time()
                    await anyio.to_thread.run_sync(self.store.purge)
            except Exception as exc:  # keep the streams open, look again
                self._poll_failed(exc)
                await asyncio.sleep(self.poll_interval)
            else:
                if self._failing:
                    logger.info("reading security events works again")
                self._failing = False

    def _poll_failed(self, exc: Exception) -> None:
        """A database outage goes to the process's outage record (which warns once per outage,
        as for every other database path); any other failure is logged once (with its message
        and traceback) until a poll works again, not once per poll."""
        reason = unavailability(exc) if self.outage is not None else None
        if reason is not None and self.outage is not None:
            self.outage.failed(reason)
        elif not self._failing:
            logger.warning("reading security events failed", exc_info=exc)
        self._failing = True

    async def _poll(self) -> bool:
        head = self._head or 0
        events = await anyio.to_thread.run_sync(lambda: self.store.after(head))
        for event in events:
            self._head = event.seq
            self.metrics.events_recorded.inc()
            for subscription in list(self._subscriptions):
                subscription.push(event)
        return bool(events)

    def wake(self) -> None:
        """An event was recorded in this process (any thread): look now."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

    # --- subscriptions ------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """A new subscription, or 503 ``temporarily_unavailable`` at the cap (or shutting down)."""
        if self._stopping or len(self._subscriptions) >= self.max_subscribers:
            raise TemporarilyUnavailable("too many event stream subscribers", retry_after=5)
        subscription = Subscription()
        self._subscriptions.add(subscription)
        self.metrics.event_subscribers.set(len(self._subscriptions))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self.metrics.event_subscribers.set(len(self._subscriptions))

    def stop(self) -> None:
        """End every stream (shutdown): uvicorn waits for open responses before it stops."""
        self._stopping = True
        for subscription in list(self._subscriptions):
            subscription.push(None)

    async def stream(self, subscription: Subscription, after: int | None) -> AsyncIterator[bytes]:
        """The SSE body: the stored events after ``after`` (all stored ones when None, or when
        ``after`` is beyond the newest: a store that was reset), then live ones, keep-alives in
        between, until the subscription ends."""
        try:
            yield sse.KEEPALIVE  # the head and a first byte go out at once
            try:
                newest = await anyio.to_thread.run_sync(self.store.newest)
                if self._head is None:  # the poller has not read the store yet: start from here
                    self._head = newest
                last = 0 if after is None or after > newest else after
                while True:
                    page = await anyio.to_thread.run_sync(self.store.after, last)
                    for stored in page:
                        yield await self._message(stored)
                        last = stored.seq
                    if len(page) < PAGE:
                        break
            except Exception as exc:  # the database (or the key ring) failed: end the stream;
                # the subscriber reconnects with Last-Event-ID and misses nothing
                logger.warning("serving stored security events failed: %s", type(exc).__name__)
                return
            event: StoredEvent | None
            while not subscription.ended:
                try:
                    async with asyncio.timeout(self.heartbeat):
                        event = await subscription.queue.get()
                except TimeoutError:
                    yield sse.KEEPALIVE
                    continue
                if event is None:
                    return
                if event.seq > last:
                    try:
                        message = await self._message(event)
                    except Exception as exc:  # signing needs the key ring: end, resume later
                        logger.warning("signing a security event failed: %s", type(exc).__name__)
                        return
                    yield message
                    last = event.seq
        finally:
            self.unsubscribe(subscription)

    async def _message(self, event: StoredEvent) -> bytes:
        token = self._signed.get(event.seq)
        if token is None:
            token = await self._sign(event)
            self._signed[event.seq] = token
            while len(self._signed) > SIGNED_CACHE:
                self._signed.popitem(last=False)
        self.metrics.events_served.inc()
        return sse.message(event.seq, token)

    async def _sign(self, event: StoredEvent) -> str:
        if se.KEY_REVOKED in event.claims.get("events", {}):
            await anyio.to_thread.run_sync(self.keyring.reload)
        # The ring's signer holds the loaded key: no unsealing on the way to a subscriber.
        return self.keyring.signer().sign_security_event(event.claims)


def on_exit_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` on the running event loop when SIGTERM or SIGINT arrives, next to
    uvicorn's own handler (which then waits for open responses to end: the streams must end
    first). The handler only schedules it: a signal handler may interrupt the loop anywhere.
    Returns the undo; outside the main thread (an embedded server) it does nothing."""
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        try:
            handler = signal.getsignal(number)
        except ValueError:  # pragma: no cover - not the main thread
            continue
        if not callable(handler):
            continue

        def chained(signum: int, frame: Any, _inner: Any = handler) -> None:
            loop.call_soon_threadsafe(callback)
            _inner(signum, frame)

        try:
            signal.signal(number, chained)
        except ValueError:  # not the main thread (an embedded server): nothing to chain
            continue
        previous[number] = handler

    def undo() -> None:
        for number, handler in previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(number, handler)

    return undo
