"""issuer/db.py ``execute_autocommit`` on a real PostgreSQL: one statement outside a transaction
block on a pooled connection, its errors raised as SQLAlchemy's (parameters hidden), a session
lost during the statement an outage (issuer/outage.py) whose connection the pool replaces."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from issuer.engines import execute_autocommit, make_engine
from issuer.outage import unavailability
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    name = f"a_{uuid.uuid4().hex[:20]}"
    eng = make_engine(postgres_server.create_database(name), pool_size=1)
    try:
        yield eng
    finally:
        eng.dispose()
        postgres_server.drop_database(name)


def test_one_statement_outside_a_transaction_block_returns_its_first_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k text PRIMARY KEY, v int)"))
    row = execute_autocommit(
        engine, "INSERT INTO t VALUES (%(k)s, %(v)s) RETURNING k, v", {"k": "a", "v": 1}
    )
    assert row == {"k": "a", "v": 1}
    assert execute_autocommit(engine, "SELECT k FROM t WHERE k = %(k)s", {"k": "none"}) is None
    with engine.connect() as conn:  # committed; the connection is back in its ordinary mode
        assert conn.execute(text("SELECT v FROM t")).scalar_one() == 1
        driver = conn.connection.driver_connection
        assert driver is not None
        assert driver.autocommit is False


def test_an_error_is_sqlalchemys_with_the_parameters_hidden_and_no_outage(engine: Engine) -> None:
    secret = "a-parameter-value-never-shown"
    with pytest.raises(DBAPIError) as caught:
        execute_autocommit(engine, "SELECT * FROM no_such_table WHERE k = %(k)s", {"k": secret})
    assert secret not in str(caught.value)
    assert not caught.value.connection_invalidated
    assert unavailability(caught.value) is None  # a 500, as for any statement
    assert execute_autocommit(engine, "SELECT 1 AS one", {}) == {"one": 1}


def test_a_session_lost_during_the_statement_is_an_outage_and_its_connection_replaced(
    engine: Engine,
) -> None:
    before = execute_autocommit(engine, "SELECT pg_backend_pid() AS pid", {})
    assert before is not None
    with pytest.raises(OperationalError) as caught:
        execute_autocommit(engine, "SELECT pg_terminate_backend(pg_backend_pid())", {})
    assert caught.value.connection_invalidated
    assert unavailability(caught.value) is not None  # a 503 temporarily_unavailable
    after = execute_autocommit(engine, "SELECT pg_backend_pid() AS pid", {})
    assert after is not None
    assert after["pid"] != before["pid"]


def test_a_server_that_refuses_connections_is_an_outage_not_a_driver_error() -> None:
    """The pool's checkout raises the driver's own error; execute_autocommit wraps it, so a
    database that is down (here: nothing listens on the port) is a 503, never a 500."""
    from tests.support.processes import free_port

    eng = make_engine(f"postgresql://keyhouse@127.0.0.1:{free_port()}/none", pool_size=1)
    try:
        with pytest.raises(OperationalError) as caught:
            execute_autocommit(eng, "SELECT 1", {})
        assert unavailability(caught.value) is not None
    finally:
        eng.dispose()
