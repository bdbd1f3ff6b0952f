"""pytest fixtures for a real PostgreSQL server started by the tests (tests/support/postgres.py).

Use them from a conftest.py:   from tests.support.pg_fixture import postgres_server, postgres_url
(or `pytest_plugins = ["tests.support.pg_fixture"]` in the root conftest.py).

Skips the tests that use them when the PostgreSQL server binaries are missing, unless
KEYHOUSE_REQUIRE_POSTGRES=1 (CI), where that is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from .postgres import PostgresServer, PostgresUnavailable


def unavailable(reason: str) -> NoReturn:
    """Skip the test for lack of PostgreSQL, or fail it under KEYHOUSE_REQUIRE_POSTGRES=1."""
    if os.environ.get("KEYHOUSE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"KEYHOUSE_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """postgresql:// URL of an empty database on the session's server (shared by all tests:
    use postgres_server.create_database(name) for a fresh one per test)."""
    return postgres_server.url
