"""The web app's ID token check (OIDC Core §3.1.3.7): every claim the issuer could get wrong, and
a token signed by a key the issuer's JWKS does not hold. The issuer never signs such tokens, so
these are made here with the issuer's own signer and served from a JWKS endpoint stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.clock import FakeClock
from shared.id_tokens import id_token_claims
from shared.jwks import build_jwks
from shared.jwks_client import JWKSClient
from shared.jwks_settings import JWKSClientSettings
from shared.keys import SigningKey, generate_signing_key
from shared.tokens import TokenSigner
from webapp.issuer_client import BadIdToken, DPoPSigner, IdClaims, IssuerClient
from webapp.settings import WebappSettings

ISSUER = "http://127.0.0.1:8000"
NONCE = "the-nonce"
ACCESS = "an-access-token"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return generate_signing_key()


def _claims(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    claims = id_token_claims(
        issuer=ISSUER,
        subject="user:1",
        client_id="demo-webapp",
        now=clock(),
        ttl=300,
        auth_time=clock(),
        sid="sid-1",
        access_token=ACCESS,
        nonce=NONCE,
    )
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _verify(key: SigningKey, clock: FakeClock, token: str, nonce: str = NONCE) -> IdClaims:
    body = json.dumps(build_jwks([key.public_jwk()])).encode()

    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async def run() -> IdClaims:
        settings = WebappSettings(client_secret="x", issuer=ISSUER, issuer_url=ISSUER)
        async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
            cache = JWKSClient(
                JWKSClientSettings(issuer=ISSUER, jwks_url=ISSUER + "/.well-known/jwks.json"),
                http,
                clock=clock,
            )
            client = IssuerClient(settings, http, cache, dpop=DPoPSigner(), clock=clock)
            return await client.verify_id_token(token, nonce=nonce, access_token=ACCESS)

    return asyncio.run(run())


def test_a_good_token(key: SigningKey) -> None:
    clock = FakeClock()
    claims = _verify(key, clock, TokenSigner(key).sign_id_token(_claims(clock)))
    assert claims.subject == "user:1"
    assert claims.sid == "sid-1"


Change = Callable[[FakeClock], dict[str, Any]]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: {"iss": "http://evil.example"}, "iss"),
        (lambda c: {"aud": "another-client", "azp": None}, "aud"),
        (lambda c: {"aud": ["demo-webapp", "x"], "azp": None}, "azp"),
        (lambda c: {"azp": "another-client"}, "azp"),
        (lambda c: {"exp": c() - 31}, "expired"),
        (lambda c: {"iat": c() + 31}, "future"),
        (lambda c: {"exp": "soon"}, "numbers"),
        (lambda c: {"nonce": "another-nonce"}, "nonce"),
        (lambda c: {"nonce": None}, "nonce"),
        (lambda c: {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash"),
        (lambda c: {"sub": ""}, "sub"),
    ],
)
def test_a_claim_out_of_place_is_refused(key: SigningKey, change: Change, reason: str) -> None:
    clock = FakeClock()
    token = TokenSigner(key).sign_id_token(_claims(clock, **change(clock)))
    with pytest.raises(BadIdToken, match=reason):
        _verify(key, clock, token)


def test_an_access_token_is_not_an_id_token(key: SigningKey) -> None:
    clock = FakeClock()
    with pytest.raises(BadIdToken, match="typ"):
        _verify(key, clock, TokenSigner(key).sign(_claims(clock)))


def test_a_key_outside_the_issuers_jwks_is_refused(key: SigningKey, other_key: SigningKey) -> None:
    clock = FakeClock()
    with pytest.raises(BadIdToken):
        _verify(key, clock, TokenSigner(other_key).sign_id_token(_claims(clock)))


def test_a_forged_signature_is_refused(key: SigningKey, other_key: SigningKey) -> None:
    clock = FakeClock()
    good = TokenSigner(key).sign_id_token(_claims(clock))
    forged = TokenSigner(other_key).sign_id_token(_claims(clock))
    head = good.rsplit(".", 1)[0]
    with pytest.raises(BadIdToken, match="signature"):
        _verify(key, clock, head + "." + forged.rsplit(".", 1)[1])


def test_garbage_is_refused(key: SigningKey) -> None:
    with pytest.raises(BadIdToken):
        _verify(key, FakeClock(), "not.a.token")
