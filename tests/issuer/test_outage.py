"""Which database errors are an outage (issuer/outage.py), on real drivers and servers: an
outage becomes 503 ``temporarily_unavailable``, logged once; anything else stays a 500."""

from __future__ import annotations

import logging
import sqlite3
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from issuer.app import create_app
from issuer.engines import engine_url, make_engine
from issuer.outage import DatabaseOutage, unavailability
from tests.issuer.conftest import ISSUER, MakeApp, settings_for
from tests.support.postgres import PostgresServer
from tests.support.processes import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _error(engine: Engine, statement: str) -> SQLAlchemyError:
    with pytest.raises(SQLAlchemyError) as caught, engine.connect() as conn:
        conn.execute(text(statement))
    return caught.value


# -- SQLite -----------------------------------------------------------------------------------


def test_sqlite_missing_table_is_not_an_outage(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/issuer.db")
    assert unavailability(_error(engine, "SELECT * FROM no_such_table")) is None
    engine.dispose()


def test_sqlite_file_that_cannot_be_opened_is_an_outage(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///file:{tmp_path}/gone/issuer.db?mode=rw&uri=true")
    assert unavailability(_error(engine, "SELECT 1")) == "unable to open database file"
    engine.dispose()


def test_sqlite_locked_past_its_busy_timeout_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "issuer.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        assert unavailability(_error(engine, "SELECT * FROM t")) == "database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_a_constraint_is_not_an_outage(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/issuer.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert unavailability(_error(engine, "INSERT INTO t VALUES (1)")) is None
    engine.dispose()


def test_no_free_pooled_connection_in_time_is_an_outage(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path}/issuer.db", pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    with engine.connect(), pytest.raises(SQLAlchemyError) as caught:
        engine.connect()
    assert unavailability(caught.value) == "no database connection became free in time"
    engine.dispose()


def test_other_exceptions_are_not_outages() -> None:
    assert unavailability(ValueError("connection refused")) is None


# -- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_connection_refused_is_an_outage() -> None:
    url = f"postgresql://keyhouse:hunter2@127.0.0.1:{free_port()}/keyhouse"
    engine = make_engine(url)
    reason = unavailability(_error(engine, "SELECT 1"))
    assert reason is not None
    assert "Connection refused" in reason
    assert "hunter2" not in reason
    engine.dispose()


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    name = f"o_{uuid.uuid4().hex[:20]}"
    url = postgres_server.create_database(name)
    yield name, url
    postgres_server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    postgres_server.drop_database(name)


@pytest.mark.postgres
def test_postgres_missing_table_is_not_an_outage(pg_database: tuple[str, str]) -> None:
    engine = make_engine(pg_database[1])
    assert unavailability(_error(engine, "SELECT * FROM no_such_table")) is None
    engine.dispose()


@pytest.mark.postgres
def test_postgres_session_ended_by_the_server_is_an_outage(
    postgres_server: PostgresServer, pg_database: tuple[str, str]
) -> None:
    # No pre-ping here: the statement itself meets the ended session.
    engine = create_engine(engine_url(pg_database[1]))
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        postgres_server._admin_sql(f"SELECT pg_terminate_backend({pid}, 10000)")  # until gone
        with pytest.raises(OperationalError) as caught:
            conn.execute(text("SELECT 1"))
    assert unavailability(caught.value) is not None
    engine.dispose()


# -- one warning per outage ---------------------------------------------------------------------


def test_one_warning_per_outage_and_one_info_line_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = DatabaseOutage(retry_after=9)
    with caplog.at_level(logging.INFO, logger="keyhouse.issuer"):
        outage.succeeded()  # nothing was down: nothing to say
        for _ in range(100):
            outage.failed("connection refused")
        assert outage.down
        outage.succeeded()
        outage.succeeded()
        outage.failed("server shutting down")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "INFO", "WARNING"]
    assert messages[0][1].startswith("database unavailable: connection refused")
    assert messages[1][1].startswith("database reachable again after")
    assert all(r.exc_info is None for r in caplog.records)


# -- over HTTP, in process ---------------------------------------------------------------------


@pytest.mark.postgres
def test_every_database_endpoint_answers_503_while_connections_are_refused(
    make_app: MakeApp, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses this issuer's new connections (ALLOW_CONNECTIONS false, its sessions
    ended): 503 temporarily_unavailable with Retry-After everywhere it is needed; lifted, the
    same app answers again (its pool pre-pings and reconnects)."""
    app = make_app(retry_after=11)
    if not app.settings.database_url.startswith("postgresql"):
        pytest.skip("ALLOW_CONNECTIONS is PostgreSQL's")
    creds = app.new_client(audiences=("photos", "issuer"), scope="photos:read issuer:admin")
    app.new_user("alice", "photos:read")
    admin = app.token(creds, grant_type="client_credentials", audience="issuer").json()[
        "access_token"
    ]
    login = app.login(creds, "alice", audience="photos")
    name = app.settings.database_url.rsplit("/", 1)[1]
    postgres_server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    postgres_server._admin_sql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    app.issuer.tokens._client_cache.clear()  # the next request reads the client again
    app.issuer.tokens._verified.clear()
    with caplog.at_level(logging.INFO, logger="keyhouse.issuer"):
        answers = {
            "password": app.token(
                creds,
                grant_type="password",
                username="alice",
                password="correct horse battery staple",
                audience="photos",
            ),
            "client_credentials": app.token(
                creds, grant_type="client_credentials", audience="photos"
            ),
            "refresh_token": app.refresh(creds, login["refresh_token"]),
            "revoke": app.post("/revoke", {"token": login["refresh_token"]}, creds=creds),
            "introspect": app.post("/introspect", {"token": login["access_token"]}, creds=creds),
            "admin": app.http.get("/admin/keys", headers={"Authorization": f"Bearer {admin}"}),
        }
        for what, response in answers.items():
            assert response.status_code == 503, (what, response.text)
            assert response.json()["error"] == "temporarily_unavailable", what
            assert response.headers["retry-after"] == "11", what
            assert response.headers["cache-control"] == "no-store", what
        ready = app.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("database unavailable: ")
        assert app.http.get("/healthz").status_code == 200
        postgres_server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert (
            app.token(creds, grant_type="client_credentials", audience="photos").status_code == 200
        )
        assert (
            app.http.get("/admin/keys", headers={"Authorization": f"Bearer {admin}"}).status_code
            == 200
        )
    warnings_logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_logged) == 1, [r.getMessage() for r in warnings_logged]
    assert warnings_logged[0].exc_info is None


def test_a_database_error_that_is_no_outage_stays_a_500(
    issuer_schema_url: str, reused_rsa_keys: None
) -> None:
    settings = settings_for(issuer_schema_url)
    with TestClient(create_app(settings), base_url=ISSUER, raise_server_exceptions=False) as http:
        engine = make_engine(settings.database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE clients"))
        engine.dispose()
        response = http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("c-unknown", "secret")
        )
        assert response.status_code == 500
        assert response.json()["error"] == "server_error"
        assert http.get("/readyz").status_code == 200  # the database itself answers
