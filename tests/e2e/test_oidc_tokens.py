"""`grant_type=authorization_code` at a real issuer process, one test per rule (PKCE, binding
to client and redirect URI, lifetime, single use, public clients), and the ID token it returns
verified with PyJWT against the JWKS. Codes are made as /authorize makes them (oidc_world.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import jwt as pyjwt
import pytest

from shared.id_tokens import at_hash
from tests.e2e.oidc_world import (
    PASSWORD,
    REDIRECT,
    World,
    error_of,
    make_code,
    make_world,
    post_token,
    redeem,
    unverified_claims,
)
from tests.support import web

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory)


# -- the grant ---------------------------------------------------------------------------------


def test_code_gives_access_refresh_and_id_token(world: World) -> None:
    grant = make_code(world, world.web)
    response = redeem(world, world.web, grant)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "openid photos:read profile"
    access = unverified_claims(body["access_token"])
    assert access["sub"] == f"user:{world.user_id}"
    assert access["aud"] == "photos"
    assert access["client_id"] == world.web["client_id"]
    assert access["sid"] == grant.sid
    # Tokens refreshed from it stay in the session.
    refreshed = post_token(
        world, world.web, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert unverified_claims(refreshed.json()["access_token"])["sid"] == grant.sid


def test_id_token_claims_and_signature_with_pyjwt_and_the_jwks(world: World) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    metadata = web.get(world.url + "/.well-known/openid-configuration", timeout=10).json()
    key = pyjwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(body["id_token"])
    claims = pyjwt.decode(
        body["id_token"],
        key.key,
        algorithms=metadata["id_token_signing_alg_values_supported"],
        audience=world.web["client_id"],
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid"]},
    )
    session = world.sessions.get(grant.sid)
    assert session is not None
    assert (
        claims["sub"] == unverified_claims(body["access_token"])["sub"] == f"user:{world.user_id}"
    )
    assert claims["azp"] == world.web["client_id"]
    assert claims["nonce"] == grant.nonce
    assert claims["sid"] == grant.sid
    assert claims["auth_time"] == int(session.auth_time)
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 300
    assert claims["at_hash"] == at_hash(body["access_token"])
    header = pyjwt.get_unverified_header(body["id_token"])
    assert header["typ"] == "JWT"
    assert header["kid"] == pyjwt.get_unverified_header(body["access_token"])["kid"]
    # An ID token is no access token: the resource services' verifier refuses its type.
    assert header["typ"] != "at+jwt"


def test_without_openid_no_id_token(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web, scopes="photos:read")).json()
    assert "id_token" not in body
    assert body["scope"] == "photos:read"


def test_pkce_verifier_missing_is_invalid_request(world: World) -> None:
    grant = make_code(world, world.web)
    response = redeem(world, world.web, grant, code_verifier="<omit>")
    assert error_of(response) == (400, "invalid_request")


def test_pkce_malformed_verifier_is_invalid_request(world: World) -> None:
    grant = make_code(world, world.web)
    for bad in ("short", "x" * 129, "a" * 42 + "+", "a" * 42 + "="):
        assert error_of(redeem(world, world.web, grant, code_verifier=bad)) == (
            400,
            "invalid_request",
        )


def test_pkce_wrong_verifier_is_invalid_grant_and_spends_the_code(world: World) -> None:
    grant = make_code(world, world.web)
    wrong = secrets.token_urlsafe(48)
    assert error_of(redeem(world, world.web, grant, code_verifier=wrong)) == (400, "invalid_grant")
    # The code is spent: whoever held it got one try.
    assert error_of(redeem(world, world.web, grant)) == (400, "invalid_grant")


def test_pkce_plain_is_refused(world: World) -> None:
    # A client using "plain" sends its verifier as the challenge and then the verifier itself:
    # S256 of the verifier is not the challenge.
    verifier = secrets.token_urlsafe(48)
    grant = make_code(world, world.web, challenge=verifier)
    response = redeem(world, world.web, grant, code_verifier=verifier)
    assert error_of(response) == (400, "invalid_grant")


def test_code_used_twice_revokes_what_the_first_use_issued(world: World) -> None:
    grant = make_code(world, world.web)
    first = redeem(world, world.web, grant)
    assert first.status_code == 200, first.text
    tokens = first.json()
    auth = (world.web["client_id"], world.web["client_secret"])

    def introspect(token: str) -> bool:
        response = web.post(world.url + "/introspect", data={"token": token}, auth=auth, timeout=10)
        assert response.status_code == 200, response.text
        return bool(response.json()["active"])

    assert introspect(tokens["access_token"])
    assert introspect(tokens["refresh_token"])
    assert error_of(redeem(world, world.web, grant)) == (400, "invalid_grant")
    assert not introspect(tokens["access_token"])
    assert not introspect(tokens["refresh_token"])
    refreshed = post_token(
        world, world.web, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert error_of(refreshed) == (400, "invalid_grant")


def test_code_of_another_client_is_invalid_grant(world: World) -> None:
    grant = make_code(world, world.other)
    assert error_of(redeem(world, world.web, grant)) == (400, "invalid_grant")


def test_another_redirect_uri_is_invalid_grant(world: World) -> None:
    grant = make_code(world, world.web)
    other = "http://127.0.0.1:9/elsewhere"
    assert error_of(redeem(world, world.web, grant, redirect_uri=other)) == (400, "invalid_grant")


def test_redirect_uri_missing_is_invalid_request(world: World) -> None:
    grant = make_code(world, world.web)
    response = redeem(world, world.web, grant, redirect_uri="<omit>")
    assert error_of(response) == (400, "invalid_request")


def test_expired_code_is_invalid_grant(world: World) -> None:
    grant = make_code(world, world.web, issued_at=time.time() - 61)
    assert error_of(redeem(world, world.web, grant)) == (400, "invalid_grant")


def test_unknown_code_is_invalid_grant(world: World) -> None:
    grant = make_code(world, world.web)
    grant.code = secrets.token_urlsafe(32)
    assert error_of(redeem(world, world.web, grant)) == (400, "invalid_grant")


def test_public_client_redeems_without_a_secret_and_refreshes(world: World) -> None:
    assert "client_secret" not in world.spa
    grant = make_code(world, world.spa)
    response = redeem(world, world.spa, grant)
    assert response.status_code == 200, response.text
    body = response.json()
    assert unverified_claims(body["id_token"])["aud"] == world.spa["client_id"]
    refreshed = post_token(
        world, world.spa, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text


@pytest.mark.parametrize("grant_type", ["client_credentials", "password"])
def test_public_client_may_not_use_a_confidential_grant(world: World, grant_type: str) -> None:
    response = post_token(
        world, world.spa, grant_type=grant_type, username="alice", password=PASSWORD
    )
    assert error_of(response) == (400, "unauthorized_client")


def test_public_client_id_alone_does_not_authenticate_a_confidential_client(
    world: World,
) -> None:
    grant = make_code(world, world.web)
    response = post_token(world, {"client_id": world.web["client_id"]}, **{
        "grant_type": "authorization_code", "code": grant.code, "redirect_uri": REDIRECT,
        "code_verifier": grant.verifier,
    })  # fmt: skip
    assert error_of(response) == (401, "invalid_client")
