"""The PostgreSQL test support itself: a real server starts, answers, and is removed."""

from __future__ import annotations

import os

import pytest

from .postgres import PostgresServer

pytestmark = pytest.mark.postgres


def _psycopg():  # type: ignore[no-untyped-def]
    if os.environ.get("KEYHOUSE_REQUIRE_POSTGRES") == "1":
        import psycopg

        return psycopg
    return pytest.importorskip("psycopg")


def test_select_one(postgres_url: str) -> None:
    psycopg = _psycopg()
    assert postgres_url.startswith("postgresql://")
    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("keyhouse_test",)


def test_fresh_database_per_test(postgres_server: PostgresServer) -> None:
    psycopg = _psycopg()
    url = postgres_server.create_database("support_fresh")
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            conn.execute("create table t (x int)")
            conn.execute("insert into t values (42)")
            assert conn.execute("select x from t").fetchone() == (42,)
    finally:
        postgres_server.drop_database("support_fresh")


def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    psycopg = _psycopg()
    bad = postgres_server.url.replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=10).close()


def test_stop_removes_everything() -> None:
    server = PostgresServer(dbname="short_lived")
    server.start()
    tmpdir = server.tmpdir
    assert tmpdir is not None
    assert tmpdir.exists()
    server.stop()
    assert not tmpdir.exists()
    server.stop()  # idempotent
