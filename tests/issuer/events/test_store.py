"""issuer/events/store.py on SQLite and PostgreSQL: record in the caller's transaction (nothing
stored when it rolls back), read after a seq in order and in pages, newest, purge; ids are never
reused once every row is purged; concurrent inserts commit in seq order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from issuer.db import init_schema
from issuer.engines import make_engine
from issuer.events.store import EXPIRY_MARGIN, EventStore
from shared import security_events as se
from shared.clock import FakeClock

ISSUER = "https://issuer.example"


@pytest.fixture
def engine(issuer_database_url: str) -> Iterator[Engine]:
    engine = make_engine(issuer_database_url, pool_size=4)
    init_schema(engine)
    yield engine
    engine.dispose()


def _claims(n: int) -> dict[str, Any]:
    return se.session_ended(issuer=ISSUER, now=1000 + n, sid=f"s{n}", exp=2000)


def test_record_read_newest_and_purge(engine: Engine) -> None:
    clock = FakeClock(1000.0)
    store = EventStore(engine, clock=clock)
    assert store.newest() == 0
    assert store.after(0) == []
    for n in range(3):
        store.record_now(_claims(n), expires=2000 + 100 * n)
    events = store.after(0)
    assert [e.claims["events"][se.SESSION_REVOKED]["subject"]["id"] for e in events] == [
        "s0",
        "s1",
        "s2",
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert store.newest() == seqs[-1]
    assert [e.seq for e in store.after(seqs[0])] == seqs[1:]
    assert [e.seq for e in store.after(0, limit=2)] == seqs[:2]
    # Kept until expires + margin; not served once past it, and purged.
    clock.now = 2000 + EXPIRY_MARGIN + 1
    assert [e.seq for e in store.after(0)] == seqs[1:]
    assert store.purge() == 1
    clock.now = 2200 + EXPIRY_MARGIN + 1
    assert store.purge() == 2
    assert store.after(0) == []
    # Ids are never reused, even with every row gone.
    store.record_now(_claims(9), expires=10**6)
    assert store.newest() > seqs[-1]


def test_a_rolled_back_transaction_stores_nothing(engine: Engine) -> None:
    store = EventStore(engine)

    def revocation_that_fails() -> None:
        with engine.begin() as conn:
            store.record(conn, _claims(1), expires=10**10)
            raise RuntimeError("the revocation failed")

    with pytest.raises(RuntimeError):
        revocation_that_fails()
    assert store.after(0) == []


def test_notify_is_called_on_record(engine: Engine) -> None:
    store = EventStore(engine)
    calls: list[int] = []
    store.notify = lambda: calls.append(1)
    store.record_now(_claims(1), expires=10**10)
    assert calls == [1]


def test_concurrent_records_commit_in_seq_order(engine: Engine) -> None:
    """A reader polling ``after(last)`` while writers race must never skip an event."""
    store = EventStore(engine)
    seen: list[int] = []
    done = threading.Event()

    def writer(k: int) -> None:
        for n in range(15):
            store.record_now(_claims(100 * k + n), expires=10**10)

    def reader() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for event in store.after(last):
                seen.append(event.seq)
                last = event.seq
            if finished:
                return

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert sorted(seen) == seen
    assert len(seen) == 45 == len(store.after(0, limit=1000))
