"""The subscriber of the issuer's event stream (``GET /events``, Server-Sent Events).

Framework-free: an :class:`httpx.AsyncClient` (transport injectable, like the JWKS fetch), an
injectable clock, sleep and random source, so tests run without a network or a real wait.

**Parsing** (:class:`SSEParser`, the WHATWG ``text/event-stream`` rules): UTF-8 (a leading BOM
dropped, invalid bytes replaced), lines ended by CRLF, LF or CR (also across chunk boundaries),
``:`` comments (the issuer's keepalives) ignored, ``field: value`` with one leading space
removed, ``data`` lines joined with ``\\n``, ``id`` kept unless it holds NUL, an empty line
dispatching the message (one without data only moves the last event id). A line longer than
``MAX_LINE`` characters, or a message whose data passes ``MAX_EVENT`` characters, is an error
that ends the connection (a signed event is a few kilobytes; nothing honest is that large).
``retry`` is ignored: the backoff below is the receiver's own.

**Subscribing** (:class:`EventSubscriber`): ``GET url`` with ``Accept: text/event-stream`` and,
once an event has been handled, ``Last-Event-ID`` (the issuer then sends every stored event after
it, so nothing is missed across reconnects and issuer restarts). Anything but a 200
``text/event-stream`` answer, a dropped connection, or ``idle_timeout`` seconds without a byte
(the issuer sends a keepalive every 10 s) ends the attempt; the next one starts after a capped
exponential backoff with jitter (``retry_backoff`` doubling to ``max_retry_backoff``, each
delay drawn in [half, all] of it; a 503's ``Retry-After`` is honoured up to the cap). The backoff
starts over once a connection has delivered something.

Each ``set`` message's data goes to the handler (``shared/revocation_events.py``): it answers
what became of the event (``applied``, ``refused``, ``replayed``, ``expired``) and the event's
``iat``. A handler that raises :class:`~shared.errors.TemporarilyUnavailable` (no usable
verification keys) ends the connection without moving past the event, so it is fetched again on
the next one. ``tick`` (the deny-list's purge) is called after every chunk read, keepalives
included, so expired entries leave even when no event comes. The state shown on ``/healthz``
(:meth:`EventSubscriber.state`) never holds a token or a secret: the URL, counters, times, and
error descriptions written here.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from shared.clock import Clock, system_clock
from shared.errors import TemporarilyUnavailable

logger = logging.getLogger("keyhouse.events")

MAX_LINE = 16_384
MAX_EVENT = 16_384
EVENT_TYPE = "set"  # the SSE event name of a Security Event Token

# Subscription states (``state`` on /healthz).
CONNECTED = "connected"
CONNECTING = "connecting"
DOWN = "down"
DISABLED = "disabled"


class StreamError(Exception):
    """The stream broke a rule (size caps, answer): the connection is dropped."""


@dataclass(frozen=True)
class SSEMessage:
    event: str  # "message" when the stream named none
    data: str
    last_event_id: str  # the stream's last event id when this message was dispatched


class SSEParser:
    """Incremental ``text/event-stream`` parser: :meth:`feed` bytes, get whole messages."""

    def __init__(self, *, max_line: int = MAX_LINE, max_event: int = MAX_EVENT) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._after_cr = False  # the last chunk ended with CR: a leading LF belongs to it
        self._started = False
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self.last_event_id = ""

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        messages: list[SSEMessage] = []
        buffer = self._buffer + text
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            end = min(i for i in (cr, lf) if i >= 0) if cr >= 0 or lf >= 0 else -1
            if end < 0:
                break
            line = buffer[start:end]
            if len(line) > self.max_line:
                raise StreamError("event stream line is too long")
            if buffer[end] == "\r":
                if end + 1 < length:
                    start = end + 2 if buffer[end + 1] == "\n" else end + 1
                else:
                    self._after_cr = True
                    start = end + 1
            else:
                start = end + 1
            message = self._line(line)
            if message is not None:
                messages.append(message)
        self._buffer = buffer[start:]
        if len(self._buffer) > self.max_line:
            raise StreamError("event stream line is too long")
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise StreamError("event stream message is too large")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> SSEMessage | None:
        data, event = self._data, self._event
        self._data, self._data_size, self._event = [], 0, ""
        if not data:
            return None
        return SSEMessage(event or "message", "\n".join(data), self.last_event_id)


@dataclass(frozen=True)
class Handled:
    """What the handler made of one event: an outcome and the event's ``iat`` (if verified)."""

    outcome: str  # "applied", "refused", "replayed" or "expired"
    issued_at: float | None = None


Handler = Callable[[str], Awaitable[Handled]]
Sleep = Callable[[float], Awaitable[None]]


class EventSubscriber:
    """Keeps a subscription to ``url`` open and hands each event to ``handler``."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        handler: Handler,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        retry_backoff: float = 0.5,
        max_retry_backoff: float = 10.0,
        clock: Clock = system_clock,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        tick: Callable[[], object] | None = None,
    ) -> None:
        self.url = url
        self._http = http
        self._handler = handler
        self._timeout = httpx.Timeout(connect_timeout, read=idle_timeout)
        self.retry_backoff = retry_backoff
        self.max_retry_backoff = max_retry_backoff
        self._clock = clock
        self._sleep = sleep
        self._random = rng or random.Random()
        self.status = CONNECTING
        self.last_event_id: str | None = None
        self.last_event_iat: float | None = None
        self.last_event_at: float | None = None
        self.last_error: str | None = None
        self.outcomes: Counter[str] = Counter()  # events by outcome
        self.connects = 0  # connections that got the stream
        self._failures = 0  # consecutive attempts that delivered nothing
        self._retry_after: float | None = None
        self._delivered = False
        self._tick = tick  # called after each chunk read (the deny-list's purge)

    def state(self) -> dict[str, Any]:
        """The subscription as ``/healthz`` shows it."""
        iat, at = self.last_event_iat, self.last_event_at
        return {
            "state": self.status,
            "url": self.url,
            "last_event_id": self.last_event_id,
            "lag_seconds": None if iat is None else round(max(0.0, self._clock() - iat), 3),
            "delivery_seconds": None if iat is None or at is None else round(at - iat, 3),
            "applied": self.outcomes["applied"],
            "refused": self.outcomes["refused"],
            "replayed": self.outcomes["replayed"],
            "expired": self.outcomes["expired"],
            "connects": self.connects,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        """Subscribe until cancelled (the app's lifespan owns the task)."""
        while True:
            self._delivered = False
            try:
                await self.connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: down, retry later; never crash the service
                self._failed(_describe(exc))
            self.status = DOWN
            self._failures = 0 if self._delivered else self._failures + 1
            await self._sleep(self.next_delay())

    def next_delay(self) -> float:
        """The pause before the next attempt: capped exponential backoff with jitter."""
        exponent = min(max(self._failures - 1, 0), 30)
        ceiling: float = min(self.max_retry_backoff, self.retry_backoff * 2.0**exponent)
        delay: float = ceiling * (0.5 + 0.5 * self._random.random())
        if self._retry_after is not None:
            delay = max(delay, min(self._retry_after, self.max_retry_backoff))
            self._retry_after = None
        return delay

    async def connect_once(self) -> None:
        """One connection: read and handle events until it ends; raises on failures. Notes in
        ``_delivered`` whether it delivered anything (a keepalive counts)."""
        self.status = CONNECTING
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        request = self._http.build_request("GET", self.url, headers=headers, timeout=self._timeout)
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            self._check_answer(response)
            self.status = CONNECTED
            self.connects += 1
            if self.last_error is not None:
                logger.info("event stream %s: connected", self.url)
            self.last_error = None
            parser = SSEParser()
            async for chunk in response.aiter_raw():
                self._delivered = True
                for message in parser.feed(chunk):
                    await self._message(message)
                if self._tick is not None:
                    self._tick()
            self._failed("the issuer closed the event stream")
        finally:
            await response.aclose()

    def _check_answer(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "text/event-stream":
                raise StreamError("the events endpoint did not answer text/event-stream")
            return
        if status == 503:
            retry = response.headers.get("retry-after", "")
            self._retry_after = float(retry) if retry.isdigit() else None
        if response.has_redirect_location:
            raise StreamError(f"the events endpoint answered {status} (redirects are not followed)")
        raise StreamError(f"the events endpoint answered {status}")

    async def _message(self, message: SSEMessage) -> None:
        if message.event != EVENT_TYPE:
            return  # an event type this receiver does not know: not ours to act on
        try:
            handled = await self._handler(message.data)
        except TemporarilyUnavailable as exc:
            # Not moved past: the next connection resumes before this event.
            raise StreamError(f"event not applied yet: {exc.description}") from exc
        self.outcomes[handled.outcome] += 1
        if message.last_event_id:
            self.last_event_id = message.last_event_id
        if handled.issued_at is not None:
            self.last_event_iat = handled.issued_at
            self.last_event_at = self._clock()

    def _failed(self, description: str) -> None:
        if description != self.last_error:  # one line per change, not one per retry
            logger.warning("event stream %s: %s", self.url, description)
        self.last_error = description


def _describe(exc: BaseException) -> str:
    """One line for the log and ``/healthz`` (never a response body or header value)."""
    if isinstance(exc, StreamError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "no data from the issuer within the idle timeout"
    if isinstance(exc, httpx.HTTPError | OSError):
        return f"{type(exc).__name__}: could not reach the issuer"
    return f"{type(exc).__name__}: unexpected error on the event stream"
