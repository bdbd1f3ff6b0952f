"""The engine: a bounded pool sized by ISSUER_DATABASE_POOL_SIZE, and clear errors for bad URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from issuer import engines
from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError


def test_pool_size_setting() -> None:
    assert IssuerSettings.from_env({}).database_pool_size == 10
    assert IssuerSettings.from_env({"ISSUER_DATABASE_POOL_SIZE": "3"}).database_pool_size == 3
    for bad in ("0", "many"):
        with pytest.raises(ConfigurationError, match="ISSUER_DATABASE_POOL_SIZE"):
            IssuerSettings.from_env({"ISSUER_DATABASE_POOL_SIZE": bad})


def test_pool_is_bounded_without_overflow(tmp_path: Path) -> None:
    # tests/issuer/conftest.py shortens POOL_TIMEOUT for every test in this directory.
    engine = engines.make_engine(f"sqlite:///{tmp_path / 'i.db'}", pool_size=2)
    first, second = engine.connect(), engine.connect()
    try:
        with pytest.raises(sqlalchemy.exc.TimeoutError):
            engine.connect()
        second.close()
        with engine.connect() as third:  # a returned connection is handed out again
            assert third.execute(text("SELECT 1")).scalar() == 1
    finally:
        first.close()
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///", "mysql://x/y"])
def test_unusable_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ISSUER_DATABASE_URL"):
        engines.make_engine(url)


def test_database_errors_never_carry_the_statement_parameters(tmp_path: Path) -> None:
    # Database exceptions are logged with their message; a bound value (a username, a token's
    # hash) must not be in it.
    engine = engines.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "secret-value-123"})
    with pytest.raises(sqlalchemy.exc.IntegrityError) as exc, engine.begin() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "secret-value-123"})
    assert "secret-value-123" not in str(exc.value)
    engine.dispose()
