"""The pool of databases at the newest migration (tests/support/pg_pool.py): a database comes
back as a fresh copy of the template reads, and is dropped instead whenever a test could have
left something in it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from issuer.db import init_schema
from issuer.engines import make_engine

from .pg_pool import SchemaPool
from .postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def pool(postgres_server: PostgresServer) -> Iterator[SchemaPool]:
    """A pool on a template of its own (the session's template stays untouched)."""
    template = f"tmpl_{uuid.uuid4().hex[:12]}"
    engine = make_engine(postgres_server.create_database(template))
    try:
        init_schema(engine)
    finally:
        engine.dispose()
    yield SchemaPool(postgres_server, template)
    postgres_server.drop_database(template)


def _sql(server: PostgresServer, name: str, *statements: str) -> list[object]:
    engine = make_engine(server.url_for(name))
    try:
        with engine.begin() as conn:
            results = [conn.execute(text(s)) for s in statements]
            return [r.scalar() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


def _exists(server: PostgresServer, name: str) -> bool:
    [found] = _sql(server, "postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")
    return found == 1


def test_a_released_database_comes_back_empty_with_its_sequences_restarted(
    pool: SchemaPool,
) -> None:
    name = pool.acquire()
    _sql(
        pool.server,
        name,
        "INSERT INTO audit_events (at, event, detail) VALUES (1, 'e', '')",
        "INSERT INTO audit_events (at, event, detail) VALUES (2, 'e', '')",
    )
    pool.release(name)
    assert pool.acquire() == name  # reused, not a new copy
    count, first_id, revision = _sql(
        pool.server,
        name,
        "SELECT count(*) FROM audit_events",
        "INSERT INTO audit_events (at, event, detail) VALUES (3, 'e', '') RETURNING id",
        "SELECT version_num FROM alembic_version",
    )
    assert (count, first_id) == (0, 1)
    assert revision is not None  # the revision row is kept
    assert pool.reused == 1


def test_a_database_with_a_session_still_connected_is_dropped(pool: SchemaPool) -> None:
    import psycopg

    name = pool.acquire()
    lingering = psycopg.connect(pool.server.url_for(name), autocommit=True)  # a test's leftover
    try:
        pool.release(name)  # dropped WITH (FORCE): the session is ended by the server
    finally:
        with contextlib.suppress(psycopg.Error):
            lingering.close()
    assert not _exists(pool.server, name)
    assert pool.acquire() != name
    assert (pool.reused, pool.dropped) == (0, 1)


def test_a_database_whose_schema_changed_is_dropped(pool: SchemaPool) -> None:
    name = pool.acquire()
    _sql(pool.server, name, "ALTER TABLE users ADD COLUMN extra integer")
    pool.release(name)
    assert not _exists(pool.server, name)
    assert pool.dropped == 1


def test_a_database_at_another_revision_is_dropped(pool: SchemaPool) -> None:
    name = pool.acquire()
    _sql(pool.server, name, "UPDATE alembic_version SET version_num = '0001'")
    pool.release(name)
    assert not _exists(pool.server, name)


@pytest.mark.parametrize(
    "statement",
    ["ANALYZE users", "VACUUM refresh_tokens", "ANALYZE"],
    ids=["one-table-analysed", "one-table-vacuumed", "all-analysed"],
)
def test_a_database_with_planner_statistics_is_dropped(pool: SchemaPool, statement: str) -> None:
    name = pool.acquire()
    for n in range(3):
        _sql(
            pool.server,
            name,
            "INSERT INTO users (user_id, username, password_hash, scopes, disabled, created_at)"
            f" VALUES ('u{n}', 'user{n}', 'x', 'a', false, 0)",
        )
    engine = make_engine(pool.server.url_for(name))
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(statement))  # what autovacuum also does to a busy table
    finally:
        engine.dispose()
    pool.release(name)
    assert not _exists(pool.server, name)
    assert (pool.reused, pool.dropped) == (0, 1)


def test_a_database_refusing_connections_is_dropped(pool: SchemaPool) -> None:
    name = pool.acquire()
    pool.server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    pool.release(name)
    assert not _exists(pool.server, name)


def test_a_template_holding_rows_is_refused(pool: SchemaPool) -> None:
    _sql(
        pool.server,
        pool.template,
        "INSERT INTO key_rotations (slot, kid, created_at) VALUES ('s', 'k', 1)",
    )
    with pytest.raises(RuntimeError, match="holds rows in key_rotations"):
        SchemaPool(pool.server, pool.template)
