"""The whole OpenID Connect round trip against a real issuer process, through the issuer's own
pages this time (``/authorize``, the login form): code, tokens, ID token, ``/userinfo``, then
``/logout`` with the ID token as hint, after which the browser's session is gone (``prompt=none``
answers ``login_required``) and the session's refresh token is refused."""

from __future__ import annotations

import json
import secrets
from typing import Any

import jwt as pyjwt
import pytest

from tests.e2e.signin_browser import SESSION, Browser, pkce_pair, redirect_params
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the test reads the Location
AFTER_LOGOUT = "http://127.0.0.1:9/signed-out"


@pytest.fixture
def started(stack: Stack) -> tuple[Stack, dict[str, Any]]:
    stack.issuer().start()
    stack.create_user("alice", PASSWORD, "photos:read")
    args = [
        "clients", "create", "--name", "web", "--scope", "openid profile photos:read",
        "--audience", "photos", "--grant", "authorization_code", "--grant", "refresh_token",
        "--redirect-uri", REDIRECT, "--post-logout-redirect-uri", AFTER_LOGOUT, "--first-party",
        "--json",
    ]  # fmt: skip
    return stack, dict(json.loads(stack.cli(*args).stdout))


def _authorize(browser: Browser, client: dict[str, Any], challenge: str, **extra: str) -> Any:
    return browser.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT,
            "scope": "openid profile photos:read",
            "state": "st-1",
            "nonce": "nonce-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        },
    )


def test_sign_in_tokens_userinfo_and_logout(started: tuple[Stack, dict[str, Any]]) -> None:
    stack, client = started
    auth = (client["client_id"], client["client_secret"])
    browser = Browser(web.Client(base_url=stack.issuer_url, timeout=15), stack.issuer_url)
    verifier, challenge = pkce_pair()

    signed_in = browser.login(_authorize(browser, client, challenge), "alice", PASSWORD)
    params = redirect_params(signed_in)
    assert (params["state"], params["iss"]) == ("st-1", stack.issuer_url)
    assert SESSION in browser.cookies

    response = web.post(
        stack.issuer_url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    jwks = pyjwt.PyJWKClient(stack.issuer_url + "/.well-known/jwks.json")
    id_token = pyjwt.decode(
        tokens["id_token"],
        jwks.get_signing_key_from_jwt(tokens["id_token"]).key,
        algorithms=["RS256"],
        audience=client["client_id"],
        issuer=stack.issuer_url,
    )
    assert id_token["nonce"] == "nonce-1"
    access = pyjwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["sid"] == id_token["sid"]

    userinfo = web.get(
        stack.issuer_url + "/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {"sub": id_token["sub"], "preferred_username": "alice"}

    state = secrets.token_urlsafe(8)
    logged_out = browser.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": AFTER_LOGOUT,
            "state": state,
        },
    )
    assert logged_out.status_code == 303
    assert logged_out.headers["location"] == f"{AFTER_LOGOUT}?state={state}"
    assert SESSION not in browser.cookies  # the issuer told the browser to drop it

    # The session is over: a silent sign-in finds none, and its refresh token is dead.
    silent = redirect_params(_authorize(browser, client, pkce_pair()[1], prompt="none"))
    assert silent["error"] == "login_required"
    refreshed = web.post(
        stack.issuer_url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=auth,
        timeout=10,
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
