"""DPoP in the store (issue 17): migration 0006 on SQLite and PostgreSQL, and a refresh-token
family bound to a DPoP key (``refresh_tokens.jkt``) through both rotation paths (the
transaction, and PostgreSQL's batched statement taken with ``SuccessorTerms``).

- 0006 adds ``clients.dpop_bound_access_tokens`` (false for old clients) and
  ``refresh_tokens.jkt`` (NULL for old tokens, which still rotate); downgrade keeps the rows.
- A bound token rotates only with its key; its successor keeps the key. Without the key, or
  with another: ``wrong_key``, the token unused and its family not revoked (whoever lacks the
  key changes nothing), on both paths.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from issuer import db, engines
from issuer.accounts import AccountStore
from issuer.refresh import RefreshGrant, RefreshTokenStore, SuccessorTerms, token_hash
from tests.support.redeem import Redeemer

KEY, OTHER = "k" * 43, "o" * 43  # RFC 7638 thumbprints are 43 base64url characters
T0 = 1000.0


@pytest.fixture
def engine(issuer_database_url: str) -> Iterator[Engine]:
    eng = engines.make_engine(issuer_database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _keep(grant: RefreshGrant, _conn: Connection) -> tuple[frozenset[str], str]:
    return grant.scopes, grant.audience


def test_upgrade_from_0005_adds_dpop_columns(engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0005")
        conn.execute(
            text(
                "INSERT INTO clients (client_id, name, secret_hash, scopes, audiences,"
                " grant_types, created_at, disabled) VALUES ('c1', 'old', :s, 'photos:read',"
                " 'photos', 'password refresh_token', 1.0, :f)"
            ),
            {"s": token_hash("old-secret"), "f": False},
        )
        conn.execute(
            text(
                "INSERT INTO users (user_id, username, password_hash, scopes, created_at,"
                " disabled) VALUES ('u1', 'alice', '-', 'photos:read', 1.0, :f)"
            ),
            {"f": False},
        )
        conn.execute(
            text(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes,"
                " audience, created_at, expires_at, family_expires_at) VALUES"
                " (:h, 'f1', 'c1', 'u1', 'photos:read', 'photos', 2.0, 9e9, 9e9)"
            ),
            {"h": token_hash("old-token")},
        )
    db.init_schema(engine)
    db.init_schema(engine)  # idempotent
    assert db.schema_revision(engine) == db.head_revision()
    client = AccountStore(engine).get_client("c1")
    assert client is not None
    assert client.dpop_bound_access_tokens is False
    redemption = RefreshTokenStore(engine, ttl=1000).rotate(
        "old-token", client_id="c1", now=3.0, narrow=_keep
    )
    assert redemption.status == "ok"
    assert redemption.grant is not None
    assert redemption.grant.jkt is None
    with engine.connect() as conn:
        assert set(conn.execute(select(db.refresh_tokens.c.jkt)).scalars()) == {None}
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0005")
    inspector = inspect(engine)
    assert "dpop_bound_access_tokens" not in {c["name"] for c in inspector.get_columns("clients")}
    assert "jkt" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.refresh_tokens)).scalar() == 2


@pytest.fixture
def store(engine: Engine) -> RefreshTokenStore:
    db.init_schema(engine)
    AccountStore(engine).create_user(
        username="alice", password="alice-password", scopes=frozenset({"a", "b"}), now=T0
    )
    return RefreshTokenStore(engine, ttl=1000, idle_ttl=500)


def _user_id(store: RefreshTokenStore) -> str:
    user = AccountStore(store.engine).find_login("alice")
    assert user is not None
    return user.user_id


def _row_of(store: RefreshTokenStore, token: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        row = (
            conn.execute(
                select(db.refresh_tokens).where(db.refresh_tokens.c.token_hash == token_hash(token))
            )
            .mappings()
            .one()
        )
    return dict(row)


@pytest.mark.parametrize("terms", [None, SuccessorTerms()], ids=["transaction", "batched"])
def test_a_bound_family_rotates_only_with_its_key(
    store: RefreshTokenStore, redeem: Redeemer, terms: SuccessorTerms | None
) -> None:
    token = store.issue(
        client_id="spa",
        user_id=_user_id(store),
        scopes=frozenset({"a"}),
        audience="photos",
        now=T0,
        jkt=KEY,
    )
    for jkt in (None, OTHER):
        refused = redeem(token, client_id="spa", now=T0 + 1, narrow=_keep, terms=terms, jkt=jkt)
        assert refused.status == "wrong_key"
        row = _row_of(store, token)
        assert (row["used_at"], row["revoked_at"]) == (None, None)  # not spent, not revoked
    done = redeem(token, client_id="spa", now=T0 + 2, narrow=_keep, terms=terms, jkt=KEY)
    assert done.status == "ok"
    assert done.token is not None
    assert _row_of(store, done.token)["jkt"] == KEY  # the successor keeps the key
    again = redeem(done.token, client_id="spa", now=T0 + 3, narrow=_keep, terms=terms)
    assert again.status == "wrong_key"
    assert _row_of(store, done.token)["used_at"] is None


@pytest.mark.parametrize("terms", [None, SuccessorTerms()], ids=["transaction", "batched"])
def test_an_unbound_family_rotates_with_or_without_a_proof(
    store: RefreshTokenStore, redeem: Redeemer, terms: SuccessorTerms | None
) -> None:
    token = store.issue(
        client_id="web", user_id=_user_id(store), scopes=frozenset({"a"}), audience="p", now=T0
    )
    done = redeem(token, client_id="web", now=T0 + 1, narrow=_keep, terms=terms, jkt=KEY)
    assert done.status == "ok"
    assert done.token is not None
    assert _row_of(store, done.token)["jkt"] is None
    last = redeem(done.token, client_id="web", now=T0 + 2, narrow=_keep, terms=terms)
    assert last.status == "ok"
