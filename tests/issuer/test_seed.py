"""The demo seed (issuer/seed.py): the web app's client beside the walkthrough's, created once,
its secret in a 0600 file of its own, its redirect URIs following the web app's address."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import update

from issuer.accounts import AccountStore, check_client_secret
from issuer.db import clients
from issuer.seed import WEBAPP_CLIENT_ID, WEBAPP_SCOPES, WEBAPP_SECRET_FILE, seed_demo
from shared.errors import ConfigurationError


@pytest.fixture
def accounts(issuer_schema_url: str) -> AccountStore:
    from issuer.engines import make_engine

    return AccountStore(make_engine(issuer_schema_url))


def test_the_webapp_client_is_confidential_first_party_with_its_redirect_uris(
    accounts: AccountStore, tmp_path: Path
) -> None:
    creds = seed_demo(accounts, tmp_path / "demo.json", 1000.0)
    assert creds["webapp_client_id"] == WEBAPP_CLIENT_ID
    client = accounts.get_client(WEBAPP_CLIENT_ID)
    assert client is not None
    assert not client.public
    assert client.first_party
    assert client.grant_types == {"authorization_code", "refresh_token"}
    assert set(client.audiences) == {"photos", "contacts"}
    assert client.scopes == {
        "openid",
        "profile",
        "photos:read",
        "photos:write",
        "contacts:read",
        "contacts:write",
    }
    assert client.redirect_uris == ("http://127.0.0.1:8003/callback",)
    assert client.post_logout_redirect_uris == ("http://127.0.0.1:8003/signed-out",)
    secret_file = tmp_path / WEBAPP_SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().removesuffix("\n")
    assert check_client_secret(client, secret)


def test_a_second_seed_keeps_the_secret_and_follows_a_moved_port(
    accounts: AccountStore, tmp_path: Path
) -> None:
    seed_demo(accounts, tmp_path / "demo.json", 1000.0)
    secret = (tmp_path / WEBAPP_SECRET_FILE).read_text()
    again = seed_demo(accounts, tmp_path / "demo.json", 1001.0, webapp_url="http://localhost:9003/")
    assert again["created"] is False
    assert (tmp_path / WEBAPP_SECRET_FILE).read_text() == secret
    client = accounts.get_client(WEBAPP_CLIENT_ID)
    assert client is not None
    assert client.redirect_uris == ("http://localhost:9003/callback",)
    assert client.post_logout_redirect_uris == ("http://localhost:9003/signed-out",)
    assert check_client_secret(client, secret.removesuffix("\n"))


def test_a_second_seed_restores_the_scopes(accounts: AccountStore, tmp_path: Path) -> None:
    seed_demo(accounts, tmp_path / "demo.json", 1000.0)
    with accounts.engine.begin() as conn:
        conn.execute(
            update(clients).where(clients.c.client_id == WEBAPP_CLIENT_ID).values(scopes="openid")
        )
    seed_demo(accounts, tmp_path / "demo.json", 1001.0)
    client = accounts.get_client(WEBAPP_CLIENT_ID)
    assert client is not None
    assert client.scopes == set(WEBAPP_SCOPES.split())


def test_a_lost_secret_file_gets_a_fresh_secret(accounts: AccountStore, tmp_path: Path) -> None:
    seed_demo(accounts, tmp_path / "demo.json", 1000.0)
    old = (tmp_path / WEBAPP_SECRET_FILE).read_text().removesuffix("\n")
    (tmp_path / WEBAPP_SECRET_FILE).unlink()
    seed_demo(accounts, tmp_path / "demo.json", 1001.0)
    new = (tmp_path / WEBAPP_SECRET_FILE).read_text().removesuffix("\n")
    client = accounts.get_client(WEBAPP_CLIENT_ID)
    assert new != old
    assert check_client_secret(client, new)
    assert not check_client_secret(client, old)


def test_a_webapp_url_that_cannot_be_a_redirect_uri_is_refused(
    accounts: AccountStore, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="--webapp-url"):
        seed_demo(accounts, tmp_path / "demo.json", 1000.0, webapp_url="http://example.com")
    assert accounts.get_client(WEBAPP_CLIENT_ID) is None
