"""The PostgreSQL test support itself: a real server starts, answers, and is removed; without
PostgreSQL its tests are skipped, or fail loudly under KEYHOUSE_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .pg_fixture import unavailable
from .postgres import PostgresServer, PostgresUnavailable


def _psycopg():  # type: ignore[no-untyped-def]
    if os.environ.get("KEYHOUSE_REQUIRE_POSTGRES") == "1":
        import psycopg

        return psycopg
    return pytest.importorskip("psycopg")


@pytest.mark.postgres
def test_select_one(postgres_url: str) -> None:
    psycopg = _psycopg()
    assert postgres_url.startswith("postgresql://")
    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("keyhouse_test",)


@pytest.mark.postgres
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


@pytest.mark.postgres
def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    psycopg = _psycopg()
    bad = postgres_server.url.replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=10).close()


@pytest.mark.postgres
def test_stop_removes_everything() -> None:
    try:
        server = PostgresServer(dbname="short_lived")
    except PostgresUnavailable as exc:  # skipped, or a failure under KEYHOUSE_REQUIRE_POSTGRES=1
        unavailable(str(exc))
    server.start()
    tmpdir = server.tmpdir
    assert tmpdir is not None
    assert tmpdir.exists()
    server.stop()
    assert not tmpdir.exists()
    server.stop()  # idempotent


# A pytest of its own, whatever the project's addopts (say -n for pytest-xdist) may hold.
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
PYTEST += ["-o", "addopts=-ra --strict-markers"]


def _run_this_module_without_postgresql(tmp_path: Path, **env: str) -> str:
    """This module's PostgreSQL tests in a pytest of their own, on a machine as if it had no
    PostgreSQL server binaries (KEYHOUSE_PG_BINDIR names an empty directory)."""
    (tmp_path / "bin").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOUSE_")}
    clean.update(KEYHOUSE_PG_BINDIR=str(tmp_path / "bin"), **env)
    proc = subprocess.run(
        [*PYTEST, "-m", "postgres", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_without_postgresql_every_test_is_skipped(tmp_path: Path) -> None:
    output = _run_this_module_without_postgresql(tmp_path)
    assert output.startswith("exit 0\n"), output
    assert "4 skipped" in output, output
    assert "error" not in output.lower(), output
    assert "failed" not in output, output


def test_without_postgresql_require_postgres_fails_every_test(tmp_path: Path) -> None:
    output = _run_this_module_without_postgresql(tmp_path, KEYHOUSE_REQUIRE_POSTGRES="1")
    assert output.startswith("exit 1\n"), output
    assert "skipped" not in output, output
    assert output.count("KEYHOUSE_REQUIRE_POSTGRES=1 but PostgreSQL server binaries") >= 4, output
