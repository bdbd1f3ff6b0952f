"""Each revocation records its security event, in the revocation's transaction, through a real
issuer app (SQLite and PostgreSQL): /revoke of an access token (jti) and of a refresh token (fid),
refresh-token reuse (fid), a replayed authorization code (jti and fid, once); logout
(sid), key revocation at the admin API (kid), and the ``fid`` claim of tokens from a family."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from shared import security_events as se
from shared.pkce import s256_challenge
from tests.issuer.conftest import App, Creds

REDIRECT = "https://web.example/callback"


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _rules(app: App) -> list[se.DenyRule]:
    return [se.rule_from_claims(e.claims) for e in app.issuer.events.store.after(0)]


def test_revoking_an_access_token_records_its_jti(app: App) -> None:
    creds = app.new_client()
    access = app.token(creds, grant_type="client_credentials").json()["access_token"]
    claims = _claims(access)
    assert "fid" not in claims
    assert "sid" not in claims
    assert app.post("/revoke", {"token": access}, creds=creds).status_code == 200
    assert _rules(app) == [
        se.DenyRule(claim="jti", value=claims["jti"], before=None, expires=claims["exp"])
    ]
    # Revoked again: nothing more is recorded.
    assert app.post("/revoke", {"token": access}, creds=creds).status_code == 200
    assert len(_rules(app)) == 1


def test_another_clients_access_token_records_nothing(app: App) -> None:
    owner, stranger = app.new_client(), app.new_client()
    access = app.token(owner, grant_type="client_credentials").json()["access_token"]
    app.post("/revoke", {"token": access}, creds=stranger)
    assert _rules(app) == []


def test_password_and_refresh_tokens_carry_fid_and_reuse_records_it(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    first = app.login(creds, "alice")
    fid = _claims(first["access_token"])["fid"]
    refreshed = app.refresh(creds, first["refresh_token"])
    assert refreshed.status_code == 200
    assert _claims(refreshed.json()["access_token"])["fid"] == fid
    assert _rules(app) == []
    assert app.refresh(creds, first["refresh_token"]).status_code == 400  # reuse
    now = int(app.clock())
    assert _rules(app) == [
        se.DenyRule(claim="fid", value=fid, before=now, expires=now + app.settings.access_token_ttl)
    ]
    (event,) = app.issuer.events.store.after(0)
    assert event.claims["events"][se.SESSION_REVOKED]["reason_admin"]["en"] == (
        "refresh token reuse"
    )


def test_revoking_a_refresh_token_records_its_family(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    tokens = app.login(creds, "alice")
    fid = _claims(tokens["access_token"])["fid"]
    app.post("/revoke", {"token": tokens["refresh_token"]}, creds=creds)
    assert [(r.claim, r.value) for r in _rules(app)] == [("fid", fid)]


def test_revoking_a_key_at_the_admin_api_records_its_kid(app: App) -> None:
    admin = app.new_client(
        scope="issuer:admin", audiences=("issuer",), grants=("client_credentials",)
    )
    kid = app.issuer.keyring.signer().kid
    app.issuer.admin.rotate(now=True)
    app.issuer.keyring.reload()
    token = app.token(admin, grant_type="client_credentials", audience="issuer").json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert app.http.post(f"/admin/keys/{kid}/revoke", headers=headers).status_code == 200
    assert app.http.post(f"/admin/keys/{kid}/revoke", headers=headers).status_code == 200
    now = int(app.clock())
    assert _rules(app) == [
        se.DenyRule(
            claim="kid", value=kid, before=None, expires=now + app.settings.access_token_ttl
        )
    ]


def test_logout_records_the_session(app: App) -> None:
    user_id = app.new_user("alice")
    _cookie, session = app.issuer.sessions.create(user_id, app.clock())
    sid = session.sid
    app.issuer.sessions.end(sid, app.clock())
    app.issuer.tokens.refresh_tokens.revoke_session(sid, app.clock())
    assert [(r.claim, r.value) for r in _rules(app)] == [("sid", sid)]


def test_a_replayed_code_records_its_access_token_and_family_once(app: App) -> None:
    client, secret = app.issuer.tokens.accounts.create_client(
        name="web",
        scopes=frozenset({"openid", "photos:read"}),
        audiences=["photos"],
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT],
        now=app.clock(),
    )
    web = Creds(client.client_id, secret)
    _cookie, session = app.issuer.sessions.create(app.new_user("alice", "photos:read"), app.clock())
    verifier = secrets.token_urlsafe(48)
    code = app.issuer.codes.issue(
        client_id=web.client_id,
        redirect_uri=REDIRECT,
        code_challenge=s256_challenge(verifier),
        user_id=session.user_id,
        scopes=["openid", "photos:read"],
        audience="photos",
        nonce=None,
        sid=session.sid,
        auth_time=session.auth_time,
        now=app.clock(),
    )
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    first = app.token(web, **form)
    assert first.status_code == 200, first.text
    access = _claims(first.json()["access_token"])
    assert access["sid"] == session.sid
    assert _rules(app) == []
    for _ in range(2):  # told once, however often the code is replayed
        assert app.token(web, **form).status_code == 400
    assert sorted((r.claim, r.value) for r in _rules(app)) == [
        ("fid", access["fid"]),
        ("jti", access["jti"]),
    ]
