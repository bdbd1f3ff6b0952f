"""The client_credentials hot path remembers what it already checked, and nothing more: a
verified Authorization header, a granted scope string, the key to sign with per batch, and jti
values cut from one random read. Each memo must answer exactly what the full check would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import update

import issuer.token_memos
from issuer.access_tokens import TokenIds
from issuer.batch_signer import BatchSigner
from issuer.db import clients
from issuer.token_memos import CLIENT_CACHE_SECONDS
from tests.issuer.conftest import App, basic


def _count_authentications(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    calls: list[str | None] = []
    real = issuer.token_memos.authenticate_client

    def counting(form: dict[str, str], authorization: str | None, lookup: Any) -> Any:
        calls.append(authorization)
        return real(form, authorization, lookup)

    monkeypatch.setattr(issuer.token_memos, "authenticate_client", counting)
    return calls


def test_a_verified_basic_header_is_checked_once_per_client_cache_period(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = app.new_client()
    calls = _count_authentications(monkeypatch)
    for _ in range(5):
        assert app.token(creds, grant_type="client_credentials").status_code == 200
    assert len(calls) == 1


def test_wrong_credentials_are_never_remembered(app: App) -> None:
    creds = app.new_client()
    assert app.token(creds, grant_type="client_credentials").status_code == 200
    wrong = app.post(
        "/token",
        {"grant_type": "client_credentials"},
        headers=basic(creds.client_id, creds.client_secret + "x"),
    )
    assert wrong.status_code == 401
    again = app.post(
        "/token",
        {"grant_type": "client_credentials"},
        headers=basic(creds.client_id, creds.client_secret + "x"),
    )
    assert again.status_code == 401


def test_a_remembered_header_does_not_skip_the_checks_on_body_credentials(app: App) -> None:
    """A client_id in the body must match the header's; a client_secret there is refused."""
    creds = app.new_client()
    assert app.token(creds, grant_type="client_credentials").status_code == 200
    other = app.token(creds, grant_type="client_credentials", client_id="someone-else")
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_request"
    both = app.token(creds, grant_type="client_credentials", client_secret=creds.client_secret)
    assert both.status_code == 400


def test_a_changed_secret_takes_effect_when_the_client_record_expires(app: App) -> None:
    """The memo lasts no longer than the client record it came from (CLIENT_CACHE_SECONDS)."""
    creds = app.new_client()
    tokens = app.issuer.tokens
    now = [1000.0]
    tokens.monotonic = lambda: now[0]
    assert app.token(creds, grant_type="client_credentials").status_code == 200
    with tokens.accounts.engine.begin() as conn:
        conn.execute(
            update(clients)
            .where(clients.c.client_id == creds.client_id)
            .values(secret_hash=hashlib.sha256(b"a new secret").hexdigest())
        )
    now[0] += CLIENT_CACHE_SECONDS / 2
    assert app.token(creds, grant_type="client_credentials").status_code == 200  # as before
    now[0] += CLIENT_CACHE_SECONDS
    assert app.token(creds, grant_type="client_credentials").status_code == 401


def test_a_scope_beyond_the_clients_is_refused_every_time(app: App) -> None:
    creds = app.new_client(scope="photos:read")
    for _ in range(2):
        refused = app.token(creds, grant_type="client_credentials", scope="photos:write")
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_scope"
    granted = app.token(creds, grant_type="client_credentials", scope="photos:read")
    assert granted.json()["scope"] == "photos:read"


def test_token_ids_are_128_random_bits_in_base64url() -> None:
    ids = TokenIds()
    many = [ids.next() for _ in range(3 * TokenIds.BATCH + 7)]  # across several random reads
    assert len(set(many)) == len(many)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in many)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def sign(self, claims: Mapping[str, Any]) -> str:
        return f"{self.name}:{claims['n']}"


def test_the_current_signer_is_asked_once_per_batch() -> None:
    picks: list[str] = []
    keys = iter(["k1", "k2"])

    def current() -> Named:
        picks.append(name := next(keys))
        return Named(name)

    batch = BatchSigner(current)

    async def main() -> tuple[list[str], list[str]]:
        first = await asyncio.gather(*(batch.sign({"n": i}) for i in range(3)))
        second = await asyncio.gather(*(batch.sign({"n": i}) for i in range(2)))
        return first, second

    first, second = asyncio.run(main())
    assert first == ["k1:0", "k1:1", "k1:2"]
    assert second == ["k2:0", "k2:1"]  # a key that changed between batches is used at once
    assert picks == ["k1", "k2"]


def test_a_failing_key_lookup_fails_the_batch_where_each_caller_awaits() -> None:
    def current() -> Named:
        raise RuntimeError("no signing key")

    batch = BatchSigner(current)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(batch.sign({"n": i}) for i in range(2)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]


def test_issued_tokens_carry_distinct_jtis(app: App) -> None:
    creds = app.new_client()
    jtis = set()
    for _ in range(3):
        token = app.token(creds, grant_type="client_credentials").json()["access_token"]
        payload = token.split(".")[1]
        jtis.add(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])
    assert len(jtis) == 3
