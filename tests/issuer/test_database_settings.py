"""The database URL from the environment: ISSUER_DATABASE_URL, or ISSUER_DATABASE_URL_FILE, and
a password from ISSUER_DATABASE_PASSWORD_FILE put into the URL (URL-escaped, any characters)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from issuer.engines import engine_url, make_engine
from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError
from tests.support.postgres import PostgresServer

PG = "postgresql://keyhouse@db.internal:5432/keyhouse"


def test_the_url_file_is_read_without_its_line_ending(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(f"sqlite:///{tmp_path}/issuer.db\n")
    settings = IssuerSettings.from_env({"ISSUER_DATABASE_URL_FILE": str(url_file)})
    assert settings.database_url == f"sqlite:///{tmp_path}/issuer.db"


def test_url_and_url_file_together_is_one_line_error(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(PG)
    env = {"ISSUER_DATABASE_URL": PG, "ISSUER_DATABASE_URL_FILE": str(url_file)}
    with pytest.raises(ConfigurationError) as caught:
        IssuerSettings.from_env(env)
    assert caught.value.description == (
        "set ISSUER_DATABASE_URL or ISSUER_DATABASE_URL_FILE, not both"
    )


@pytest.mark.parametrize(
    "password", ["plain", "p@ss:w/rd?#%&=+ ", "päss wörd", "'\"\\;$(x)", "%41%2F"]
)
def test_any_password_from_the_file_reaches_the_driver_unchanged(
    tmp_path: Path, password: str
) -> None:
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    env = {"ISSUER_DATABASE_URL": PG, "ISSUER_DATABASE_PASSWORD_FILE": str(secret)}
    settings = IssuerSettings.from_env(env)
    url = make_url(engine_url(settings.database_url))
    assert url.password == password
    assert (url.username, url.host, url.port, url.database) == (
        "keyhouse",
        "db.internal",
        5432,
        "keyhouse",
    )


def test_the_password_file_goes_into_the_url_file_too(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(PG + "?sslmode=require\n")
    (tmp_path / "password").write_text("s3cret\n")
    env = {
        "ISSUER_DATABASE_URL_FILE": str(tmp_path / "url"),
        "ISSUER_DATABASE_PASSWORD_FILE": str(tmp_path / "password"),
    }
    url = make_url(engine_url(IssuerSettings.from_env(env).database_url))
    assert url.password == "s3cret"
    assert url.query == {"sslmode": "require"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://keyhouse:inline@db/keyhouse",
            "the database URL already holds a password: "
            "set it there or in ISSUER_DATABASE_PASSWORD_FILE, not both",
        ),
        (
            "postgresql://db/keyhouse",
            "ISSUER_DATABASE_PASSWORD_FILE needs a user name in the database URL "
            "(postgresql://USER@HOST/DB)",
        ),
        (
            "sqlite:///var/issuer.db",
            "ISSUER_DATABASE_PASSWORD_FILE needs a postgresql:// database URL, got 'sqlite'",
        ),
    ],
)
def test_a_password_file_with_an_unsuitable_url_is_one_line_error(
    tmp_path: Path, url: str, message: str
) -> None:
    (tmp_path / "password").write_text("x")
    env = {"ISSUER_DATABASE_URL": url, "ISSUER_DATABASE_PASSWORD_FILE": str(tmp_path / "password")}
    with pytest.raises(ConfigurationError) as caught:
        IssuerSettings.from_env(env)
    assert caught.value.description == message
    assert "inline" not in caught.value.description


@pytest.mark.parametrize("variable", ["ISSUER_DATABASE_URL_FILE", "ISSUER_DATABASE_PASSWORD_FILE"])
def test_a_missing_or_empty_file_is_one_line_error(tmp_path: Path, variable: str) -> None:
    env = {"ISSUER_DATABASE_URL": PG} if variable.endswith("PASSWORD_FILE") else {}
    with pytest.raises(ConfigurationError) as caught:
        IssuerSettings.from_env({**env, variable: str(tmp_path / "nope")})
    assert caught.value.description == (
        f"{variable}: cannot read {tmp_path / 'nope'}: No such file or directory"
    )
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigurationError) as caught:
        IssuerSettings.from_env({**env, variable: str(tmp_path / "empty")})
    assert caught.value.description == f"{variable}: {tmp_path / 'empty'} is empty"


def test_retry_after_setting(tmp_path: Path) -> None:
    assert IssuerSettings.from_env({}).retry_after == 5
    assert IssuerSettings.from_env({"ISSUER_RETRY_AFTER": "12"}).retry_after == 12
    with pytest.raises(ConfigurationError):
        IssuerSettings.from_env({"ISSUER_RETRY_AFTER": "0"})


@pytest.mark.postgres
def test_a_hard_password_from_the_file_logs_in_to_a_real_server(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    password = "p@ss:w/rd?#% 'ü\"\\"
    user = "keyhouse_file_pw"
    escaped = password.replace("'", "''")
    postgres_server._admin_sql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
        f"CREATE ROLE {user} LOGIN; END IF; END $$"
    )
    postgres_server._admin_sql(f"ALTER ROLE {user} PASSWORD '{escaped}'")
    (tmp_path / "password").write_text(password + "\n")
    env = {
        "ISSUER_DATABASE_URL": f"postgresql://{user}@127.0.0.1:{postgres_server.port}/postgres",
        "ISSUER_DATABASE_PASSWORD_FILE": str(tmp_path / "password"),
    }
    engine = make_engine(IssuerSettings.from_env(env).database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == user
    finally:
        engine.dispose()
