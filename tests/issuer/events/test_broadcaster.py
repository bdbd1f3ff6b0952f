"""issuer/events/broadcaster.py on a real store and key ring (SQLite): backlog then live events,
signed once per event with the current key; an event between a first backlog and the poller's
start is pushed; a key-revoked event is signed by the replacement; an
in-process record wakes the poller at once; the subscriber cap; stop() ends the streams; a
subscriber too far behind is ended; a resume point beyond the newest event counts as none; a
database outage while polling is the process's outage (one warning for all), another failure is
logged once with its traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey
from sqlalchemy.exc import TimeoutError as PoolTimeout

from issuer.events import EventStore, StoredEvent, sse
from issuer.events import broadcaster as module
from issuer.events.broadcaster import Broadcaster
from issuer.keys import KeyRing
from issuer.metrics import IssuerMetrics
from issuer.outage import DatabaseOutage
from shared import security_events as se
from shared.errors import TemporarilyUnavailable
from tests.issuer.keys.support import MAX_AGE, make_repo

ISSUER = "https://issuer.example"


_ENGINES: list[Any] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


def _setup(tmp_path: Path, **options: Any) -> tuple[Broadcaster, EventStore, KeyRing]:
    repo = make_repo(tmp_path)
    _ENGINES.append(repo.engine)
    repo.ensure_signing_key(time.time())
    ring = KeyRing(repo, jwks_max_age=MAX_AGE)
    ring.reload()
    store = EventStore(repo.engine)
    settings = {"max_subscribers": 4, "heartbeat": 0.05, "poll_interval": 0.05, **options}
    return Broadcaster(store, ring, IssuerMetrics(), **settings), store, ring


def _event(n: int) -> dict[str, Any]:
    return se.session_ended(issuer=ISSUER, now=int(time.time()), sid=f"s{n}", exp=2**40)


async def _messages(stream: AsyncIterator[bytes], count: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    async with asyncio.timeout(10):
        async for chunk in stream:
            if chunk.startswith(b"id: "):
                head, _event_line, data = chunk.decode().split("\n")[:3]
                found.append((int(head[4:]), data.removeprefix("data: ")))
                if len(found) == count:
                    return found
    return found


def _payload(token: str, ring: KeyRing) -> tuple[str, dict[str, Any]]:
    header = jws.extract_compact(token.encode()).headers()
    key = ring.verification_key(header["kid"])
    assert key is not None
    result = jws.deserialize_compact(token, RSAKey.import_key(key.public_key), algorithms=["RS256"])
    assert result.headers()["typ"] == "secevent+jwt"
    return header["kid"], json.loads(result.payload)


def test_backlog_then_live_signed_once_with_the_current_key(tmp_path: Path) -> None:
    broadcaster, store, ring = _setup(tmp_path)
    store.record_now(_event(1), expires=2**40)

    async def main() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        poller = asyncio.create_task(broadcaster.run())
        first = broadcaster.stream(broadcaster.subscribe(), None)
        second = broadcaster.stream(broadcaster.subscribe(), 0)
        backlog = await _messages(first, 1)
        await asyncio.to_thread(store.record_now, _event(2), expires=2**40)
        live = await _messages(first, 1)
        both = await _messages(second, 2)
        poller.cancel()
        return backlog + live, both

    one, two = asyncio.run(main())
    assert [seq for seq, _ in one] == [1, 2]
    assert one == two  # the same signature for the same event: signed once
    kid, payload = _payload(one[1][1], ring)
    assert kid == ring.signer().kid
    assert payload["events"][se.SESSION_REVOKED]["subject"]["id"] == "s2"


def test_an_event_between_a_first_backlog_and_the_pollers_start_is_pushed(
    tmp_path: Path,
) -> None:
    """A subscriber served its backlog before the poller read the store (as a process starts,
    or on a loaded machine), then an event recorded, then the poller's first read: the event
    is pushed live (the poller starts after what the stream read, not after the newest)."""
    broadcaster, store, _ring = _setup(tmp_path)
    store.record_now(_event(1), expires=2**40)

    async def main() -> list[tuple[int, str]]:
        stream = broadcaster.stream(broadcaster.subscribe(), None)
        backlog = await _messages(stream, 1)
        await asyncio.to_thread(store.record_now, _event(2), expires=2**40)
        poller = asyncio.create_task(broadcaster.run())
        live = await _messages(stream, 1)
        poller.cancel()
        return backlog + live

    assert [seq for seq, _ in asyncio.run(main())] == [1, 2]


def test_a_key_revoked_event_is_signed_by_the_replacement(tmp_path: Path) -> None:
    broadcaster, store, ring = _setup(tmp_path)
    revoked = ring.signer().kid
    ring.repo.revoke(revoked, time.time())  # the ring in memory still signs with it
    assert ring.signer().kid == revoked
    claims = se.key_revoked(issuer=ISSUER, now=int(time.time()), kid=revoked, exp=2**40)
    store.record_now(claims, expires=2**40)

    async def main() -> list[tuple[int, str]]:
        return await _messages(broadcaster.stream(broadcaster.subscribe(), None), 1)

    ((_seq, token),) = asyncio.run(main())
    kid, _ = _payload(token, ring)
    assert kid != revoked
    assert kid == ring.signer().kid


def test_an_in_process_record_wakes_the_poller(tmp_path: Path) -> None:
    broadcaster, store, _ring = _setup(tmp_path, poll_interval=30.0, heartbeat=30.0)

    async def main() -> float:
        poller = asyncio.create_task(broadcaster.run())
        await asyncio.sleep(0.2)  # the poller has read the newest seq and waits
        stream = broadcaster.stream(broadcaster.subscribe(), None)
        assert await stream.__anext__() == sse.KEEPALIVE
        started = time.monotonic()
        await asyncio.to_thread(store.record_now, _event(1), expires=2**40)
        await _messages(stream, 1)
        poller.cancel()
        return time.monotonic() - started

    assert asyncio.run(main()) < 5.0  # not the 30 s poll interval


def test_a_cancel_arriving_as_an_event_wakes_the_poller_ends_it(tmp_path: Path) -> None:
    """The lifespan cancels the poller at shutdown; an event recorded just before sets the wake
    in the same turn of the loop. On Python 3.11 asyncio.wait_for swallowed that cancellation:
    the poller polled on and the issuer's shutdown waited forever (a test's app teardown hung
    a CI run)."""
    broadcaster, _store, _ring = _setup(tmp_path, poll_interval=30.0)

    async def main() -> None:
        poller = asyncio.create_task(broadcaster.run())
        while broadcaster._head is None:  # the poller has read the newest seq
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and waits on its wake
        broadcaster._wake.set()  # what wake() does for a record in this process
        poller.cancel()  # in the same turn of the loop
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):  # a TimeoutError here: the cancel was lost
                await poller

    asyncio.run(main())


def test_the_subscriber_cap(tmp_path: Path) -> None:
    broadcaster, _store, _ring = _setup(tmp_path, max_subscribers=2)
    first = broadcaster.subscribe()
    broadcaster.subscribe()
    with pytest.raises(TemporarilyUnavailable) as refused:
        broadcaster.subscribe()
    assert refused.value.headers["Retry-After"]
    broadcaster.unsubscribe(first)
    broadcaster.subscribe()


def test_stop_ends_the_streams_and_refuses_new_ones(tmp_path: Path) -> None:
    broadcaster, _store, _ring = _setup(tmp_path, heartbeat=30.0)

    async def main() -> list[bytes]:
        stream = broadcaster.stream(broadcaster.subscribe(), None)
        chunks = [await stream.__anext__()]
        broadcaster.stop()
        async with asyncio.timeout(5):
            chunks += [chunk async for chunk in stream]
        return chunks

    assert asyncio.run(main()) == [sse.KEEPALIVE]
    with pytest.raises(TemporarilyUnavailable):
        broadcaster.subscribe()


def test_a_subscriber_too_far_behind_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "QUEUE_SIZE", 2)
    broadcaster, _store, _ring = _setup(tmp_path)

    async def main() -> bool:
        subscription = broadcaster.subscribe()
        for seq in range(1, 5):
            subscription.push(StoredEvent(seq, _event(seq)))
        return subscription.ended

    assert asyncio.run(main()) is True


def test_a_resume_point_beyond_the_newest_counts_as_none(tmp_path: Path) -> None:
    broadcaster, store, _ring = _setup(tmp_path)
    store.record_now(_event(1), expires=2**40)

    async def main() -> list[tuple[int, str]]:
        return await _messages(broadcaster.stream(broadcaster.subscribe(), 999), 1)

    assert [seq for seq, _ in asyncio.run(main())] == [1]


def test_a_database_failure_ends_the_stream_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broadcaster, store, _ring = _setup(tmp_path, max_subscribers=1)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("the database is gone")

    monkeypatch.setattr(store, "after", broken)

    async def main() -> list[bytes]:
        subscription = broadcaster.subscribe()
        async with asyncio.timeout(5):
            chunks = [chunk async for chunk in broadcaster.stream(subscription, None)]
        broadcaster.subscribe()  # its slot (the only one) is free again
        return chunks

    assert asyncio.run(main()) == [sse.KEEPALIVE]


def _poll_failing(broadcaster: Broadcaster, store: EventStore, exc: Exception) -> int:
    """Run the poller while every read of the store raises ``exc``; how many reads it made."""
    calls = 0

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise exc

    async def main() -> None:
        task = asyncio.create_task(broadcaster.run())
        async with asyncio.timeout(10):
            while calls < 4:  # several polls, each failing
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    store.after = broken  # type: ignore[method-assign]
    asyncio.run(main())
    return calls


def test_a_database_outage_while_polling_is_the_outage_records_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The poller's outage is the process's outage: one warning from issuer/outage.py for all of
    them (requests, key reload, poller), none of the poller's own (it logged one of its own
    beside the outage's; tests/issuer/test_outage.py counted two on CI)."""
    outage = DatabaseOutage(retry_after=5)
    broadcaster, store, _ring = _setup(tmp_path, outage=outage)
    caplog.set_level(logging.WARNING)
    polls = _poll_failing(broadcaster, store, PoolTimeout("QueuePool limit reached"))
    assert polls >= 4
    assert outage.down
    assert outage.reason == "no database connection became free in time"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["keyhouse.issuer"], warnings


def test_another_poll_failure_is_logged_once_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outage = DatabaseOutage(retry_after=5)
    broadcaster, store, _ring = _setup(tmp_path, outage=outage)
    caplog.set_level(logging.WARNING)
    _poll_failing(broadcaster, store, ValueError("a bug, not an outage"))
    assert not outage.down
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.name == "keyhouse.issuer.events"
    assert warning.exc_info is not None
    assert "a bug, not an outage" in caplog.text
