"""/logout and /userinfo while the database refuses the issuer's connections (PostgreSQL's
ALLOW_CONNECTIONS): /logout, a browser's page, answers with the error page, 503 and
Retry-After, never JSON or a 500; /userinfo, an API, with the JSON 503. Both work again once the
outage is lifted, with nothing ended meanwhile."""

from __future__ import annotations

import secrets

import pytest

from shared.pkce import s256_challenge
from tests.issuer.conftest import App, Creds
from tests.support.postgres import PostgresServer

REDIRECT = "https://app.example/callback"
SESSION = "__Host-keyhouse-session"


def test_logout_and_userinfo_during_a_database_outage(
    app: App, request: pytest.FixtureRequest
) -> None:
    if not app.settings.database_url.startswith("postgresql"):
        pytest.skip("ALLOW_CONNECTIONS is PostgreSQL's")
    client, secret = app.issuer.tokens.accounts.create_client(
        name="web",
        scopes=frozenset({"openid", "photos:read"}),
        audiences=["photos"],
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT],
        now=app.clock(),
    )
    user_id = app.new_user("alice", "photos:read")
    cookie, session = app.issuer.sessions.create(user_id, app.clock())
    verifier = secrets.token_urlsafe(48)
    code = app.issuer.codes.issue(
        client_id=client.client_id, redirect_uri=REDIRECT, code_challenge=s256_challenge(verifier),
        user_id=user_id, scopes=["openid", "photos:read"], audience="photos", nonce=None,
        sid=session.sid, auth_time=session.auth_time, now=app.clock(),
    )  # fmt: skip
    tokens = app.token(
        Creds(client.client_id, secret),
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    ).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    logout = {"id_token_hint": tokens["id_token"]}
    cookies = {"Cookie": f"{SESSION}={cookie}"}

    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = app.settings.database_url.rsplit("/", 1)[1]
    server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        server._admin_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        page = app.http.get("/logout", params=logout, headers=cookies)
        assert page.status_code == 503, page.text
        assert page.headers["retry-after"] == "5"
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "Signing out is not possible right now." in page.text
        assert "set-cookie" not in page.headers
        info = app.http.get("/userinfo", headers=bearer)
        assert info.status_code == 503
        assert info.json()["error"] == "temporarily_unavailable"
    finally:
        server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert app.http.get("/userinfo", headers=bearer).status_code == 200
    done = app.http.get("/logout", params=logout, headers=cookies)
    assert done.status_code == 200
    assert app.issuer.sessions.find(cookie, app.clock()) is None
