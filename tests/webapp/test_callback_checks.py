"""The callback when the issuer's answer fails the web app's checks, which the real issuer never
produces: an ID token for another nonce, or a token response without an ID token. The issuer's
side is a stand-in on the app's injected transport; the web app itself is the real app."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.clock import FakeClock
from shared.id_tokens import id_token_claims
from shared.jwks import build_jwks
from shared.keys import SigningKey, generate_signing_key
from shared.tokens import TokenSigner
from webapp.app import create_app
from webapp.settings import WebappSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ISSUER = "http://127.0.0.1:8000"
APP = "https://127.0.0.1:8003"  # https: the test client sends the Secure cookie back


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key()


def _issuer(
    key: SigningKey, clock: FakeClock, token_body: Callable[[], dict[str, Any]]
) -> tuple[httpx.MockTransport, list[str]]:
    revoked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/jwks.json":
            return httpx.Response(200, json=build_jwks([key.public_jwk()]))
        if request.url.path == "/token":
            return httpx.Response(200, json=token_body())
        if request.url.path == "/revoke":
            revoked.append(parse_qs(request.content.decode())["token"][0])
            return httpx.Response(200)
        return httpx.Response(404)

    return httpx.MockTransport(handle), revoked


def _sign_in_with(transport: httpx.MockTransport, clock: FakeClock) -> httpx.Response:
    settings = WebappSettings(client_secret="s", url=APP, issuer=ISSUER, issuer_url=ISSUER)
    with TestClient(create_app(settings, transport=transport, clock=clock), base_url=APP) as client:
        start = client.get("/login", follow_redirects=False)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        answer: httpx.Response = client.get(
            "/callback", params={"code": "c", "state": state, "iss": ISSUER}, follow_redirects=False
        )
        return answer


def test_an_id_token_for_another_nonce_is_refused_and_its_refresh_token_given_back(
    key: SigningKey,
) -> None:
    clock = FakeClock()

    def body() -> dict[str, Any]:
        claims = id_token_claims(
            issuer=ISSUER, subject="user:1", client_id="demo-webapp", now=clock(), ttl=60,
            auth_time=clock(), sid="s", access_token="at", nonce="someone else's",
        )  # fmt: skip
        return {
            "access_token": "at",
            "token_type": "DPoP",
            "expires_in": 60,
            "refresh_token": "rt-1",
            "id_token": TokenSigner(key).sign_id_token(claims),
        }

    transport, revoked = _issuer(key, clock, body)
    answer = _sign_in_with(transport, clock)
    assert answer.status_code == 502
    assert "failed its checks" in answer.text
    assert revoked == ["rt-1"]
    assert "__Host-webapp-session" not in answer.headers.get("set-cookie", "")


def test_a_token_response_without_an_id_token_is_refused(key: SigningKey) -> None:
    clock = FakeClock()
    body = {"access_token": "at", "token_type": "DPoP", "expires_in": 60}
    transport, _ = _issuer(key, clock, lambda: body)
    answer = _sign_in_with(transport, clock)
    assert answer.status_code == 502
    assert "failed its checks" in answer.text
