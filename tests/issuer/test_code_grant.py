"""The authorization code grant in-process on SQLite and PostgreSQL: what a replay revokes, the
``sid`` through both refresh rotation paths (PostgreSQL's one-statement path included), a
disabled user, and the ID token's lifetime on the injected clock. The rule-by-rule tests against
a real process are tests/e2e/test_oidc_tokens.py."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest

from shared.pkce import s256_challenge
from tests.issuer.conftest import App, Creds

REDIRECT = "https://app.example/callback"


@dataclass
class Issued:
    code: str
    verifier: str
    sid: str


@pytest.fixture
def web(app: App) -> Creds:
    client, secret = app.issuer.tokens.accounts.create_client(
        name="web",
        scopes=frozenset({"openid", "profile", "photos:read"}),
        audiences=["photos", "contacts"],
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT],
        now=app.clock(),
    )
    return Creds(client.client_id, secret)


def _issue(app: App, creds: Creds, user_id: str, scopes: str = "openid photos:read") -> Issued:
    _cookie, session = app.issuer.sessions.create(user_id, app.clock())
    verifier = secrets.token_urlsafe(48)
    code = app.issuer.codes.issue(
        client_id=creds.client_id,
        redirect_uri=REDIRECT,
        code_challenge=s256_challenge(verifier),
        user_id=user_id,
        scopes=scopes.split(),
        audience="photos",
        nonce="n1",
        sid=session.sid,
        auth_time=session.auth_time,
        now=app.clock(),
    )
    return Issued(code, verifier, session.sid)


def _redeem(app: App, creds: Creds, issued: Issued) -> Any:
    return app.token(
        creds,
        grant_type="authorization_code",
        code=issued.code,
        redirect_uri=REDIRECT,
        code_verifier=issued.verifier,
    )


def _claims(token: str) -> dict[str, Any]:
    return dict(pyjwt.decode(token, options={"verify_signature": False}))


def test_replay_revokes_the_first_tokens(app: App, web: Creds) -> None:
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    first = _redeem(app, web, issued)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert app.introspect(web, tokens["access_token"])["active"] is True
    replay = _redeem(app, web, issued)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert app.introspect(web, tokens["access_token"]) == {"active": False}
    assert app.introspect(web, tokens["refresh_token"]) == {"active": False}
    assert app.refresh(web, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert "authorization_code_reuse" in app.audit_events()


def test_a_code_used_once_is_not_audited_as_reused(app: App, web: Creds) -> None:
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    assert _redeem(app, web, issued).status_code == 200
    assert "authorization_code_reuse" not in app.audit_events()


def test_sid_survives_refreshes_on_both_rotation_paths(app: App, web: Creds) -> None:
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    body = _redeem(app, web, issued).json()
    assert _claims(body["access_token"])["sid"] == issued.sid
    # A plain refresh (PostgreSQL: the one-statement path), then one that narrows the scope and
    # switches audience (the transaction path).
    plain = app.refresh(web, body["refresh_token"]).json()
    assert _claims(plain["access_token"])["sid"] == issued.sid
    narrowed = app.refresh(web, plain["refresh_token"], scope="photos:read", audience="contacts")
    assert narrowed.status_code == 200, narrowed.text
    claims = _claims(narrowed.json()["access_token"])
    assert (claims["sid"], claims["aud"]) == (issued.sid, "contacts")
    assert "id_token" not in narrowed.json()  # OIDC Core §12.2: a refresh need not send one


def test_id_token_lives_as_long_as_the_access_token(app: App, web: Creds) -> None:
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    body = _redeem(app, web, issued).json()
    id_claims = _claims(body["id_token"])
    access = _claims(body["access_token"])
    assert id_claims["iat"] == access["iat"] == int(app.clock())
    assert id_claims["exp"] == access["exp"] == int(app.clock()) + app.settings.access_token_ttl
    assert id_claims["nonce"] == "n1"


def test_a_disabled_user_gets_nothing(app: App, web: Creds) -> None:
    user_id = app.new_user("alice", "photos:read")
    issued = _issue(app, web, user_id)
    app.issuer.tokens.accounts.set_user_disabled("alice", True)
    response = _redeem(app, web, issued)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_expires_after_its_lifetime(app: App, web: Creds) -> None:
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    app.advance(app.issuer.codes.ttl)
    response = _redeem(app, web, issued)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_from_a_session_since_ended_gets_nothing(app: App, web: Creds) -> None:
    # The user signed out (GET /logout ends the session, then its refresh families) after the
    # code was issued and before the client redeemed it.
    issued = _issue(app, web, app.new_user("alice", "photos:read"))
    assert app.issuer.sessions.end(issued.sid, app.clock())
    response = _redeem(app, web, issued)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
