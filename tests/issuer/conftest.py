from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from issuer.accounts import AccountStore
from issuer.app import create_app
from issuer.db import init_schema, make_engine
from issuer.settings import IssuerSettings
from shared.scopes import parse_scope

ISSUER = "https://issuer.test"


@pytest.fixture
def settings(tmp_path: Path) -> IssuerSettings:
    return IssuerSettings(
        issuer_url=ISSUER,
        database_url=f"sqlite:///{tmp_path}/issuer.db",
        secret_key="unit-test-secret-key-0123456789",
    )


@pytest.fixture
def client(settings: IssuerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=ISSUER) as test_client:
        yield test_client


@pytest.fixture
def accounts(settings: IssuerSettings) -> AccountStore:
    engine = make_engine(settings.database_url)
    init_schema(engine)
    return AccountStore(engine)


@pytest.fixture
def demo(accounts: AccountStore) -> dict[str, str]:
    _client, secret = accounts.create_client(
        name="t",
        scopes=parse_scope("photos:read photos:write issuer:admin"),
        audiences=["photos", "issuer"],
        grant_types=["client_credentials", "password", "refresh_token"],
        now=0.0,
        client_id="c1",
    )
    accounts.create_user(
        username="alice", password="alice-password", scopes=parse_scope("photos:read"), now=0.0
    )
    return {"client_id": "c1", "client_secret": secret}
