"""shared.event_stream: the text/event-stream parser (WHATWG rules, caps) and the subscriber
(Last-Event-ID resume, capped backoff with jitter, state for /healthz) over httpx.MockTransport,
with an injected clock and sleep (no network, no real wait)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from shared.clock import FakeClock
from shared.errors import KeysUnavailable
from shared.event_stream import (
    CONNECTED,
    DOWN,
    EventSubscriber,
    Handled,
    SSEMessage,
    SSEParser,
    StreamError,
)

URL = "https://issuer.example/events"
STREAM = {"content-type": "text/event-stream; charset=utf-8"}

# -- the parser ------------------------------------------------------------------------------


def parse(*chunks: bytes, parser: SSEParser | None = None) -> list[SSEMessage]:
    parser = parser or SSEParser()
    return [m for chunk in chunks for m in parser.feed(chunk)]


def test_one_message_with_id_event_and_data() -> None:
    assert parse(b"id: 7\nevent: set\ndata: a.b.c\n\n") == [SSEMessage("set", "a.b.c", "7")]


def test_comments_and_keepalives_dispatch_nothing() -> None:
    assert parse(b": keepalive\n\n: another\n\n") == []


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_and_every_split_point(eol: bytes) -> None:
    stream = eol.join([b"id: 1", b"event: set", b"data: x", b"", b"id: 2", b"data: y", b"", b""])
    expected = [SSEMessage("set", "x", "1"), SSEMessage("message", "y", "2")]
    for cut in range(len(stream) + 1):
        assert parse(stream[:cut], stream[cut:]) == expected, cut
    assert parse(*(bytes([b]) for b in stream)) == expected  # one byte at a time


def test_data_lines_join_with_newlines() -> None:
    assert parse(b"data: one\ndata:two\ndata\n\n") == [SSEMessage("message", "one\ntwo\n", "")]


def test_only_one_leading_space_is_removed_and_a_line_without_colon_is_a_field() -> None:
    assert parse(b"data:  two spaces\n\n")[0].data == " two spaces"
    assert parse(b"event\ndata: x\n\n")[0].event == "message"  # empty event name: the default


def test_a_leading_bom_is_dropped_once() -> None:
    assert parse(b"\xef\xbb\xbfdata: x\n\n")[0].data == "x"
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n")[0].data == "x"


def test_an_id_holding_nul_is_ignored_and_an_id_without_data_still_moves() -> None:
    parser = SSEParser()
    assert parse(b"id: 5\n\n", parser=parser) == []
    assert parser.last_event_id == "5"
    assert parse(b"id: 6\x00\ndata: x\n\n", parser=parser) == [SSEMessage("message", "x", "5")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse(b"data: \xff\n\n")[0].data == "\ufffd"


def test_unknown_fields_and_retry_are_ignored() -> None:
    assert parse(b"retry: 10\nfoo: bar\ndata: x\n\n") == [SSEMessage("message", "x", "")]


def test_a_line_over_the_cap_is_an_error() -> None:
    with pytest.raises(StreamError, match="line is too long"):
        parse(b"data: " + b"x" * 100 + b"\n", parser=SSEParser(max_line=50))
    with pytest.raises(StreamError, match="line is too long"):  # never ended: still bounded
        parse(b"data: " + b"x" * 100, parser=SSEParser(max_line=50))


def test_a_message_over_the_cap_is_an_error() -> None:
    parser = SSEParser(max_line=100, max_event=100)
    with pytest.raises(StreamError, match="message is too large"):
        parse(*[b"data: " + b"x" * 40 + b"\n"] * 3, parser=parser)


# -- the subscriber ---------------------------------------------------------------------------


class Stop(Exception):
    """Raised by the fake sleep to end run() after some attempts."""


class Issuer:
    """A fake events endpoint: each connection is answered by the next entry of ``answers``."""

    def __init__(self, answers: list[Callable[[httpx.Request], httpx.Response]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else refuse(404)
        return answer(request)


def stream(*chunks: bytes, then: Exception | None = None) -> Callable[..., httpx.Response]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if then is not None:
            raise then

    return lambda request: httpx.Response(200, headers=STREAM, content=body())


def refuse(status: int, **headers: str) -> Callable[..., httpx.Response]:
    return lambda request: httpx.Response(status, headers=headers, content=b"{}")


def event(seq: int, data: str = "SET") -> bytes:
    return f"id: {seq}\nevent: set\ndata: {data}-{seq}\n\n".encode()


class World:
    def __init__(
        self,
        answers: list[Callable[[httpx.Request], httpx.Response]],
        outcome: Callable[[str], Handled] = lambda data: Handled("applied", 1_700_000_000.0),
        attempts: int = 1,
    ) -> None:
        self.issuer = Issuer(answers)
        self.clock = FakeClock(1_700_000_002.5)
        self.delays: list[float] = []
        self.handled: list[str] = []
        self.attempts = attempts

        async def handler(data: str) -> Handled:
            self.handled.append(data)
            return outcome(data)

        async def sleep(delay: float) -> None:
            self.delays.append(delay)
            if len(self.delays) >= self.attempts:
                raise Stop

        self.subscriber = EventSubscriber(
            URL,
            httpx.AsyncClient(transport=httpx.MockTransport(self.issuer.handler)),
            handler,
            clock=self.clock,
            sleep=sleep,
            rng=random.Random(1),
            retry_backoff=0.5,
            max_retry_backoff=10.0,
        )

    def run(self) -> None:
        with pytest.raises(Stop):
            asyncio.run(self.subscriber.run())

    def last_event_ids(self) -> list[str | None]:
        return [r.headers.get("last-event-id") for r in self.issuer.requests]


def test_events_are_handled_and_the_next_connection_resumes_after_the_last() -> None:
    w = World([stream(event(1), b": keepalive\n\n", event(2)), stream(event(3))], attempts=2)
    w.run()
    assert w.handled == ["SET-1", "SET-2", "SET-3"]
    assert w.last_event_ids() == [None, "2"]
    request = w.issuer.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    state = w.subscriber.state()
    assert state["last_event_id"] == "3"
    assert state["applied"] == 3
    assert state["lag_seconds"] == 2.5  # now - the last event's iat
    assert state["connects"] == 2
    assert state["state"] == DOWN  # the fake issuer closed the stream
    assert state["last_error"] == "the issuer closed the event stream"


def test_the_state_is_connected_while_the_stream_is_open() -> None:
    seen: list[str] = []
    w = World([stream(event(1))])
    w.subscriber._handler = lambda data: _record_state(w.subscriber, seen)
    w.run()
    assert seen == [CONNECTED]


async def _record_state(subscriber: EventSubscriber, seen: list[str]) -> Handled:
    seen.append(subscriber.state()["state"])
    return Handled("applied")


def test_other_event_types_are_not_handled() -> None:
    w = World([stream(b"id: 1\nevent: ping\ndata: x\n\n", b"id: 2\ndata: y\n\n", event(3))])
    w.run()
    assert w.handled == ["SET-3"]


def test_outcomes_are_counted() -> None:
    outcomes = iter(["applied", "refused", "replayed", "expired", "refused"])
    w = World(
        [stream(*(event(i) for i in range(1, 6)))],
        outcome=lambda data: Handled(next(outcomes), None),
    )
    w.run()
    state = w.subscriber.state()
    assert (state["applied"], state["refused"], state["replayed"], state["expired"]) == (1, 2, 1, 1)
    assert state["last_event_id"] == "5"  # a refused event is not fetched again
    assert state["lag_seconds"] is None  # no verified event, no iat


def test_an_event_that_cannot_be_verified_yet_is_fetched_again() -> None:
    def outcome(data: str) -> Handled:
        if data == "SET-2":
            raise KeysUnavailable("verification keys are not available")
        return Handled("applied", 1_700_000_000.0)

    w = World([stream(event(1), event(2), event(3))], outcome=outcome)
    w.run()
    assert w.handled == ["SET-1", "SET-2"]  # the connection ended at event 2
    assert w.subscriber.last_event_id == "1"  # the next one resumes before it
    assert "not applied yet" in (w.subscriber.last_error or "")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (refuse(404), "the events endpoint answered 404"),
        (refuse(302, location="https://evil.example/events"), "redirects are not followed"),
        (
            lambda r: httpx.Response(200, headers={"content-type": "application/json"}),
            "did not answer text/event-stream",
        ),
        (stream(b"data: " + b"x" * 20_000 + b"\n\n"), "line is too long"),
        (stream(event(1), then=httpx.ReadTimeout("idle")), "within the idle timeout"),
        (stream(then=httpx.RemoteProtocolError("peer closed")), "could not reach the issuer"),
    ],
    ids=["404", "redirect", "content type", "huge line", "idle", "dropped"],
)
def test_a_failed_attempt_is_down_with_its_reason(
    answer: Callable[..., httpx.Response], error: str
) -> None:
    w = World([answer])
    w.run()
    state = w.subscriber.state()
    assert state["state"] == DOWN
    assert error in state["last_error"]
    assert len(w.issuer.requests) == 1  # a redirect is not followed


def test_the_backoff_doubles_with_jitter_up_to_the_cap_and_starts_over_after_data() -> None:
    failures = [refuse(500)] * 8
    w = World([*failures, stream(b": keepalive\n\n"), refuse(500)], attempts=10)
    w.run()
    ceilings = [0.5, 1, 2, 4, 8, 10, 10, 10]
    for delay, ceiling in zip(w.delays, ceilings, strict=False):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(w.delays[5:8])) == 3  # jittered, not one fixed cap
    assert w.delays[8] <= 0.5  # the keepalive made that connection a success
    assert 0.25 <= w.delays[9] <= 0.5


def test_a_503_retry_after_is_honoured_up_to_the_cap() -> None:
    answers = [refuse(503, **{"retry-after": "7"}), refuse(503, **{"retry-after": "60"})]
    w = World(answers, attempts=2)
    w.run()
    assert w.delays[0] >= 7
    assert w.delays[1] == 10.0


def test_the_state_holds_no_secret_and_names_the_url() -> None:
    w = World([refuse(401, **{"www-authenticate": "Bearer secret-value"})])
    w.run()
    state: dict[str, Any] = w.subscriber.state()
    assert state["url"] == URL
    assert "secret-value" not in repr(state)
    assert set(state) == {
        "state",
        "url",
        "last_event_id",
        "lag_seconds",
        "delivery_seconds",
        "applied",
        "refused",
        "replayed",
        "expired",
        "connects",
        "last_error",
    }
