"""What the OpenID Connect token-side tests (tests/e2e/test_oidc_*.py) share: a real issuer
process with a user and three clients, and codes and sessions made on its database.

The codes and sessions are made through the store's own ``CodeStore`` and ``SessionStore`` on
the issuer's database, as ``/authorize`` and the login page make them: the tests are about what
``/token``, ``/userinfo`` and ``/logout`` do with a code and a session, one rule at a time, with
``issued_at`` and the PKCE challenge under the test's control (an expired code, a "plain"
challenge), which the browser flow cannot produce. The flow through ``/authorize`` itself is
tested by the sign-in, interop and browser tests.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from sqlalchemy.engine import Engine

from issuer.accounts import AccountStore
from issuer.codes import CodeStore
from issuer.engines import make_engine
from issuer.sessions import SessionStore
from shared.pkce import s256_challenge
from tests.support import web
from tests.support.processes import Stack

REDIRECT = "http://127.0.0.1:9/callback"
AFTER_LOGOUT = "http://127.0.0.1:9/signed-out"
PASSWORD = "correct horse battery staple"
SESSION_COOKIE = "__Host-keyhouse-session"


@dataclass
class World:
    stack: Stack
    engine: Engine
    codes: CodeStore
    sessions: SessionStore
    user_id: str
    web: dict[str, Any]  # confidential: code + refresh
    other: dict[str, Any]  # confidential, another client with the same redirect URI
    spa: dict[str, Any]  # public: code + refresh, no secret

    @property
    def url(self) -> str:
        return self.stack.issuer_url


def _client(stack: Stack, *extra: str) -> dict[str, Any]:
    args = [
        "clients", "create", "--name", "web", "--scope", "openid profile photos:read",
        "--audience", "photos", "--grant", "authorization_code", "--grant", "refresh_token",
        "--redirect-uri", REDIRECT, "--post-logout-redirect-uri", AFTER_LOGOUT, "--json", *extra,
    ]  # fmt: skip
    return dict(json.loads(stack.cli(*args).stdout))


def make_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A stack with the issuer running (ISSUER_ACCESS_TOKEN_TTL=300), alice, and the clients."""
    stack = Stack(tmp_path_factory.mktemp("oidc"))
    try:
        stack.issuer(ISSUER_ACCESS_TOKEN_TTL="300").start()
        stack.create_user("alice", PASSWORD, "photos:read")
        engine = make_engine(stack.database_url, pool_size=2)
        user = AccountStore(engine).find_login("alice")
        assert user is not None
        yield World(
            stack=stack,
            engine=engine,
            codes=CodeStore(engine, ttl=60),
            sessions=SessionStore(engine, idle_ttl=1800, ttl=28800),
            user_id=user.user_id,
            web=_client(stack),
            other=_client(stack),
            spa=_client(stack, "--public"),
        )
        engine.dispose()
    finally:
        stack.stop_all()


@dataclass
class Grant:
    code: str
    verifier: str
    sid: str
    cookie: str
    nonce: str


def make_code(
    world: World,
    client: dict[str, Any],
    *,
    scopes: str = "openid profile photos:read",
    challenge: str | None = None,
    issued_at: float | None = None,
) -> Grant:
    """What /authorize hands a client after a login: a session and a code bound to it."""
    now = time.time() if issued_at is None else issued_at
    cookie, session = world.sessions.create(world.user_id, time.time())
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    code = world.codes.issue(
        client_id=client["client_id"],
        redirect_uri=REDIRECT,
        code_challenge=challenge if challenge is not None else s256_challenge(verifier),
        user_id=world.user_id,
        scopes=scopes.split(),
        audience="photos",
        nonce=nonce,
        sid=session.sid,
        auth_time=session.auth_time,
        now=now,
    )
    return Grant(code, verifier, session.sid, cookie, nonce)


def post_token(world: World, client: dict[str, Any], **form: str) -> httpx.Response:
    secret = client.get("client_secret")
    if secret is None:  # a public client: client_id in the body, no secret
        form = {"client_id": client["client_id"], **form}
        return web.post(world.url + "/token", data=form, timeout=10)
    return web.post(world.url + "/token", data=form, auth=(client["client_id"], secret), timeout=10)


def redeem(world: World, client: dict[str, Any], grant: Grant, **changes: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "redirect_uri": REDIRECT,
        "code_verifier": grant.verifier,
        **changes,
    }
    return post_token(world, client, **{k: v for k, v in form.items() if v != "<omit>"})


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def unverified_claims(token: str) -> dict[str, Any]:
    return dict(pyjwt.decode(token, options={"verify_signature": False}))
