"""The refresh replay grace at the store (issuer/refresh.py), on SQLite and PostgreSQL, with an
injected ``now``: a redeemed token presented again within ISSUER_REFRESH_REPLAY_GRACE while its
successor is unused is honoured (the successor spent, a new one issued); everything else is
reuse, which ends the family, as without the grace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine, RowMapping

from issuer.db import refresh_tokens
from issuer.engines import make_engine
from issuer.refresh import Redemption, RefreshGrant, RefreshTokenStore, token_hash

GRACE = 10.0
OWNER = "owner-client"
T0 = 1000.0


@pytest.fixture
def engine(issuer_schema_url: str) -> Iterator[Engine]:
    eng = make_engine(issuer_schema_url, pool_size=4)
    try:
        yield eng
    finally:
        eng.dispose()


def keep(grant: RefreshGrant, _conn: Connection) -> tuple[frozenset[str], str]:
    return grant.scopes, grant.audience


def login(store: RefreshTokenStore, now: float = T0) -> str:
    return store.issue(
        client_id=OWNER, user_id="u1", scopes=frozenset({"photos:read"}), audience="photos", now=now
    )


def rotate(
    store: RefreshTokenStore,
    token: str,
    now: float,
    *,
    grace: float = GRACE,
    client_id: str = OWNER,
) -> Redemption:
    return store.rotate(token, client_id=client_id, now=now, narrow=keep, replay_grace=grace)


def row(store: RefreshTokenStore, token: str) -> RowMapping:
    with store.engine.connect() as conn:
        return (
            conn.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(token))
            )
            .mappings()
            .one()
        )


def live(store: RefreshTokenStore) -> list[str]:
    """Hashes of the rows neither used nor revoked."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(refresh_tokens.c.token_hash)
                .where(refresh_tokens.c.used_at.is_(None))
                .where(refresh_tokens.c.revoked_at.is_(None))
            ).scalars()
        )


def revoked(store: RefreshTokenStore) -> int:
    with store.engine.connect() as conn:
        rows = conn.execute(select(refresh_tokens.c.revoked_at)).scalars().all()
    return sum(r is not None for r in rows)


def ok_token(redemption: Redemption) -> str:
    assert redemption.status == "ok", redemption
    assert redemption.token is not None
    return redemption.token


def test_rotation_records_the_parent(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    assert row(store, rt1)["parent_hash"] is None
    first = rotate(store, rt1, T0 + 1)
    rt2 = ok_token(first)
    assert not first.replayed
    assert row(store, rt2)["parent_hash"] == token_hash(rt1)


@pytest.mark.parametrize("after", [0.0, 4.0, GRACE])  # GRACE: the window's last instant
def test_replay_within_the_grace_spends_the_successor_and_issues_a_new_one(
    store: RefreshTokenStore, after: float
) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    replay = rotate(store, rt1, T0 + 1 + after)
    rt3 = ok_token(replay)
    assert replay.replayed
    assert rt3 not in (rt1, rt2)
    assert replay.grant is not None
    assert replay.scopes == frozenset({"photos:read"})
    assert row(store, rt2)["used_at"] == T0 + 1 + after  # spent, never delivered
    assert row(store, rt1)["used_at"] == T0 + 1 + after  # the window restarts from the replay
    assert row(store, rt3)["parent_hash"] == token_hash(rt1)
    assert live(store) == [token_hash(rt3)]
    assert revoked(store) == 0
    # The new successor is an ordinary token: it rotates, and is no replay.
    onward = rotate(store, rt3, T0 + 20)
    assert ok_token(onward)
    assert not onward.replayed


def test_replay_after_the_grace_is_reuse_and_ends_the_family(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    assert rotate(store, rt1, T0 + 1 + GRACE + 0.5).status == "reused"
    assert revoked(store) == 2
    assert rotate(store, rt2, T0 + 12).status == "revoked"


def test_replay_after_the_successor_was_used_is_reuse(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    rt3 = ok_token(rotate(store, rt2, T0 + 2))  # the owner moved on: rt1's answer was not lost
    assert rotate(store, rt1, T0 + 3).status == "reused"
    assert rotate(store, rt3, T0 + 4).status == "revoked"
    assert live(store) == []


def test_the_spent_successor_presented_later_ends_the_family(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    rt3 = ok_token(rotate(store, rt1, T0 + 2))  # replayed: rt2 spent
    # Whoever holds rt2 (a thief racing the owner, or the owner if the replay was the thief's)
    # presents a spent token with no successor: reuse, even within the grace.
    assert rotate(store, rt2, T0 + 3).status == "reused"
    assert rotate(store, rt3, T0 + 4).status == "revoked"  # the replayer's chain ends too
    assert rotate(store, rt1, T0 + 5).status == "revoked"
    assert live(store) == []


def test_grace_zero_is_reuse_at_once(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1, grace=0))
    assert rotate(store, rt1, T0 + 1, grace=0).status == "reused"
    assert rotate(store, rt2, T0 + 2, grace=0).status == "revoked"


def test_another_clients_replay_is_refused_and_spends_nothing(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    assert rotate(store, rt1, T0 + 2, client_id="thief-client").status == "wrong_client"
    assert live(store) == [token_hash(rt2)]
    assert ok_token(rotate(store, rt2, T0 + 3))


@pytest.mark.parametrize("ends", ["token", "family"])
def test_an_expired_token_is_refused_within_the_grace(engine: Engine, ends: str) -> None:
    # token: idle lifetime 5 s; family: absolute lifetime 5 s. rt1 is rotated just before its end.
    idle, ttl = (5, 1000) if ends == "token" else (1000, 5)
    store = RefreshTokenStore(engine, ttl=ttl, idle_ttl=idle)
    rt1 = login(store)
    ok_token(rotate(store, rt1, T0 + 4))
    assert rotate(store, rt1, T0 + 6).status == "reused"
    assert live(store) == []


def test_replays_one_after_the_other_leave_one_live_successor(store: RefreshTokenStore) -> None:
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    rt3 = ok_token(rotate(store, rt1, T0 + 2))
    rt4 = ok_token(rotate(store, rt1, T0 + 3))
    assert live(store) == [token_hash(rt4)]
    assert {row(store, t)["used_at"] for t in (rt2, rt3)} == {T0 + 2, T0 + 3}
    # The grace restarts from each replay, but only while the newest successor is unused.
    ok_token(rotate(store, rt4, T0 + 4))
    assert rotate(store, rt1, T0 + 5).status == "reused"


def test_a_row_rotated_before_migration_0004_has_no_successor_and_its_replay_is_reuse(
    store: RefreshTokenStore,
) -> None:
    rt1 = login(store)
    ok_token(rotate(store, rt1, T0 + 1))
    with store.engine.begin() as conn:  # what 0004 leaves on rows rotated before it
        conn.execute(refresh_tokens.update().values(parent_hash=None))
    assert rotate(store, rt1, T0 + 2).status == "reused"


def _wait_for_a_blocked_transaction(engine: Engine) -> None:
    """PostgreSQL: poll until another session of this database waits on a lock (30 s: on a
    loaded CI machine 10 s once ran out; the poll returns as soon as the wait is seen)."""
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            # End the read's transaction: PostgreSQL keeps the first pg_stat_activity it read
            # in a transaction until that ends, so a poll that never ended one never saw the
            # other session start to wait (the test failed once so, after 30 s).
            conn.rollback()
            time.sleep(0.01)
    raise AssertionError("the second replay never waited on the first one's lock")


def test_concurrent_replays_leave_exactly_one_live_successor(store: RefreshTokenStore) -> None:
    """Two replays of one token at once. On PostgreSQL the first to lock the presented row holds
    its transaction open (in ``narrow``) until the other waits on that lock, so the loser's path
    (its conditional UPDATE changes nothing, it decides again on the winner's state) runs every
    time. On SQLite the write lock serialises them. Either way: both honoured in turn, exactly
    one live successor, no family revoked."""
    rt1 = login(store)
    rt2 = ok_token(rotate(store, rt1, T0 + 1))
    postgres = store.engine.dialect.name == "postgresql"
    barrier = threading.Barrier(2, timeout=10)
    first_in = threading.Lock()
    held = [False]
    results: list[Redemption] = []
    errors: list[BaseException] = []

    def narrow(grant: RefreshGrant, conn: Connection) -> tuple[frozenset[str], str]:
        with first_in:
            hold = not held[0]
            held[0] = True
        if hold and postgres:
            _wait_for_a_blocked_transaction(store.engine)
        return keep(grant, conn)

    def replay() -> None:
        try:
            barrier.wait()
            results.append(
                store.rotate(rt1, client_id=OWNER, now=T0 + 3, narrow=narrow, replay_grace=GRACE)
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.replayed for r in results)
    successors = [token_hash(ok_token(r)) for r in results]
    alive = live(store)
    assert len(alive) == 1
    assert alive[0] in successors
    assert revoked(store) == 0
    assert row(store, rt2)["used_at"] is not None
    # The other replay's successor is spent: presenting it ends the family.
    spent = next(r for r in results if token_hash(ok_token(r)) != alive[0])
    assert rotate(store, ok_token(spent), T0 + 4).status == "reused"
    assert live(store) == []
