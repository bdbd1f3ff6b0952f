"""Forged and wrong tokens against a real photos process: every one is 401 invalid_token."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization

from bench.harness.processes import Server
from issuer.engines import make_engine
from issuer.keys import KeyRepository, KeySealer
from shared.keys import SigningKey
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def env(module_stack: Stack) -> tuple[Stack, Server, SigningKey, dict[str, Any]]:
    stack = module_stack
    stack.issuer().start()
    photos = stack.resource("photos").start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    good = stack.token(client)["access_token"]
    kid = pyjwt.get_unverified_header(good)["kid"]
    repo = KeyRepository(
        make_engine(stack.issuer_env["ISSUER_DATABASE_URL"]),
        KeySealer(stack.issuer_env["ISSUER_SECRET_KEY"]),
        access_token_ttl=900,
    )
    key = repo.load_private(kid)
    claims = pyjwt.decode(good, options={"verify_signature": False})
    assert (
        web.get(photos.url + "/whoami", headers={"Authorization": f"Bearer {good}"}).status_code
        == 200
    )
    return stack, photos, key, claims


def _sign(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    headers = {"typ": "at+jwt", "kid": key.kid, **header}
    return pyjwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)


def _hs256_with_public_key(key: SigningKey, claims: dict[str, Any]) -> str:
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    import hashlib
    import hmac

    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _alg_none(key: SigningKey, claims: dict[str, Any]) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": key.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _tampered(key: SigningKey, claims: dict[str, Any]) -> str:
    token = _sign(key, claims)
    head, _payload, sig = token.split(".")
    evil = {**claims, "scope": "photos:read photos:write admin"}
    return f"{head}.{_b64(json.dumps(evil).encode())}.{sig}"


FORGERIES: dict[str, Callable[[SigningKey, dict[str, Any]], str]] = {
    "alg_none": _alg_none,
    "hs256_keyed_with_public_key": _hs256_with_public_key,
    "wrong_iss": lambda k, c: _sign(k, {**c, "iss": "https://evil.example"}),
    "wrong_aud": lambda k, c: _sign(k, {**c, "aud": "contacts"}),
    "expired": lambda k, c: _sign(
        k,
        {
            **c,
            "exp": int(time.time()) - 3600,
            "iat": int(time.time()) - 7200,
            "nbf": int(time.time()) - 7200,
        },
    ),
    "typ_jwt": lambda k, c: _sign(k, c, typ="JWT"),
    "tampered_payload": _tampered,
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_token_is_invalid_token(
    env: tuple[Stack, Server, SigningKey, dict[str, Any]], forgery: str
) -> None:
    _stack, photos, key, claims = env
    token = FORGERIES[forgery](key, claims)
    response = web.get(photos.url + "/photos", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, (forgery, response.text)
    assert response.json()["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="photos"')
    assert 'error="invalid_token"' in challenge


def test_missing_token_and_missing_scope(
    env: tuple[Stack, Server, SigningKey, dict[str, Any]],
) -> None:
    _stack, photos, key, claims = env
    missing = web.get(photos.url + "/photos")
    assert missing.status_code == 401
    # Both schemes are accepted (the default), so both challenges come back (RFC 9449 §7.1).
    assert missing.headers.get_list("www-authenticate") == [
        'Bearer realm="photos"',
        'DPoP realm="photos", algs="ES256 RS256"',
    ]
    token = _sign(key, claims)  # scope photos:read only
    denied = web.post(
        photos.url + "/photos", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert denied.status_code == 403
    assert denied.json()["error"] == "insufficient_scope"
    assert 'scope="photos:write"' in denied.headers["www-authenticate"]
