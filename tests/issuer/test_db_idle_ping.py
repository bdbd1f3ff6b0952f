"""The PostgreSQL pool's idle ping (issuer/db.py ``ping_when_idle``), on a real server: a pooled
connection is pinged on checkout only when it sat idle past the threshold or the server has
said something on it (a session it ended); a busy one goes straight to work. Pings are counted
by what the server says each session last ran (``pg_stat_activity.query``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from issuer.engines import engine_url, make_engine, ping_when_idle
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

PING = ";"  # what SQLAlchemy's psycopg dialect pings with (an empty query)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"p_{uuid.uuid4().hex[:20]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def monitor(pg_url: str) -> Iterator[Engine]:
    """A connection of its own (never pooled) to look at the other sessions."""
    engine = create_engine(engine_url(pg_url), poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def last_query(monitor: Engine, pid: int) -> str:
    with monitor.connect() as conn:
        query = conn.execute(
            text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
    return str(query)


def backend_pid(engine: Engine) -> int:
    with engine.begin() as conn:  # ends with COMMIT: the session's last query
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(monitor: Engine, pid: int) -> None:
    """End the session and wait until it is gone (its last words sent, its socket closed)."""
    with monitor.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar()


def test_a_connection_back_within_the_threshold_is_not_pinged_an_idle_one_is(
    pg_url: str, monitor: Engine
) -> None:
    clock = Clock()
    engine = create_engine(engine_url(pg_url), pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_after=1.0, monotonic=clock)
    try:
        pid = backend_pid(engine)  # a new connection: not pinged
        assert last_query(monitor, pid) == "COMMIT"

        clock.now += 0.9  # busy: back in the pool for less than the threshold
        with engine.connect() as conn:
            assert last_query(monitor, pid) == "COMMIT"  # checked out without a ping
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid

        clock.now += 1.1  # idle past the threshold
        with engine.connect():
            assert last_query(monitor, pid) == PING

        clock.now += 0.5
        assert backend_pid(engine) == pid  # the same connection all along
        clock.now += 0.5
        with engine.connect():
            assert last_query(monitor, pid) == "COMMIT"
    finally:
        engine.dispose()


def test_a_session_the_server_ended_in_the_pool_is_pinged_and_replaced_at_once(
    pg_url: str, monitor: Engine
) -> None:
    clock = Clock()  # never advanced: only the server's last words trigger the ping
    engine = create_engine(engine_url(pg_url), pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_after=1.0, monotonic=clock)
    try:
        pid = backend_pid(engine)
        terminate(monitor, pid)
        # Without a ping this statement would meet the ended session and fail.
        replaced = backend_pid(engine)
        assert replaced != pid
        clock.now += 0.5
        with engine.connect():
            assert last_query(monitor, replaced) == "COMMIT"  # the new one is busy: no ping
    finally:
        engine.dispose()


def test_the_issuers_engine_pings_idle_connections_instead_of_every_checkout(
    pg_url: str, monitor: Engine
) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        assert not engine.pool._pre_ping  # no round trip on every checkout
        pid = backend_pid(engine)
        terminate(monitor, pid)
        assert backend_pid(engine) != pid  # replaced before use, the request unharmed
    finally:
        engine.dispose()
