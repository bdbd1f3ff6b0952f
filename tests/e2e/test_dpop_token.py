"""DPoP at ``/token`` (issue 17, RFC 9449 §5), against a real issuer process: proofs signed with
real keys (cryptography, by hand as RFC 7515 says: tests/shared/test_dpop_support.py).

- a valid proof on any grant binds the access token: ``cnf.jkt`` is the proof key's RFC 7638
  thumbprint, ``token_type`` is ``DPoP`` (ES256 and RS256);
- client_credentials without a ``DPoP`` header is unchanged: ``Bearer``, no ``cnf``;
- refused with 400 ``invalid_dpop_proof``: a replayed proof, a wrong ``htu`` or ``htm``, two
  ``DPoP`` headers, a malformed one;
- a public client's refresh tokens are bound to the key: a refresh without a proof, or with a
  proof by another key, is ``invalid_grant`` and spends nothing (the right key then works, and
  the successor is bound too); a confidential client's are not;
- a client registered with ``--dpop`` must send a proof (400 ``invalid_request`` without);
- both metadata documents list ``dpop_signing_alg_values_supported``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.dpop import access_token_hash, thumbprint
from tests.e2e.oidc_world import (
    REDIRECT,
    World,
    error_of,
    make_code,
    make_world,
    post_token,
    redeem,
    unverified_claims,
)
from tests.shared.test_dpop_support import EC_KEY, EC_KEY_2, RSA_KEY, make_proof, public_jwk
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory)


@pytest.fixture(scope="module")
def service(world: World) -> dict[str, Any]:
    """A confidential client_credentials client."""
    return world.stack.create_client(scope="photos:read", audiences=["photos"])


def proof(
    world: World, key: Any = EC_KEY, alg: str = "ES256", *, htm: str = "POST", htu: str = ""
) -> str:
    payload = {
        "jti": str(uuid.uuid4()),
        "htm": htm,
        "htu": htu or world.url + "/token",
        "iat": int(time.time()),
    }
    return make_proof(key, alg, payload=payload)


def cc(world: World, client: dict[str, Any], *dpop: str) -> httpx.Response:
    return web.post(
        world.url + "/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        headers=[("DPoP", value) for value in dpop],
        timeout=10,
    )


@pytest.mark.parametrize(("key", "alg"), [(EC_KEY, "ES256"), (RSA_KEY, "RS256")])
def test_a_proof_binds_the_access_token(
    world: World, service: dict[str, Any], key: Any, alg: str
) -> None:
    response = cc(world, service, proof(world, key, alg))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = unverified_claims(body["access_token"])
    assert claims["cnf"] == {"jkt": thumbprint(public_jwk(key))}


def test_client_credentials_without_dpop_is_unchanged(
    world: World, service: dict[str, Any]
) -> None:
    response = cc(world, service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in unverified_claims(body["access_token"])


def test_introspection_says_dpop_for_a_bound_token(world: World, service: dict[str, Any]) -> None:
    bound = cc(world, service, proof(world)).json()["access_token"]
    plain = cc(world, service).json()["access_token"]
    auth = (service["client_id"], service["client_secret"])
    seen = [
        web.post(world.url + "/introspect", data={"token": t}, auth=auth, timeout=10).json()
        for t in (bound, plain)
    ]
    assert (seen[0]["active"], seen[0]["token_type"]) == (True, "DPoP")
    assert seen[0]["cnf"] == {"jkt": thumbprint(public_jwk(EC_KEY))}
    assert (seen[1]["active"], seen[1]["token_type"]) == (True, "Bearer")


def test_a_replayed_proof_is_refused(world: World, service: dict[str, Any]) -> None:
    once = proof(world)
    assert cc(world, service, once).status_code == 200
    response = cc(world, service, once)
    assert error_of(response) == (400, "invalid_dpop_proof")
    assert "used before" in response.json()["error_description"]


@pytest.mark.parametrize(
    "change",
    [
        {"htm": "GET"},
        {"htu": "http://127.0.0.1:9/token"},
        {"htu": "{issuer}/revoke"},
    ],
    ids=["htm", "htu-host", "htu-path"],
)
def test_a_proof_for_another_request_is_refused(
    world: World, service: dict[str, Any], change: dict[str, str]
) -> None:
    htu = change.get("htu", "").replace("{issuer}", world.url)
    response = cc(world, service, proof(world, htm=change.get("htm", "POST"), htu=htu))
    assert error_of(response) == (400, "invalid_dpop_proof")


@pytest.mark.parametrize("headers", ["two", "malformed", "empty"])
def test_two_proofs_or_a_malformed_one_are_refused(
    world: World, service: dict[str, Any], headers: str
) -> None:
    values = {
        "two": [proof(world), proof(world)],
        "malformed": ["not.a.proof"],
        "empty": [""],
    }[headers]
    response = cc(world, service, *values)
    assert error_of(response) == (400, "invalid_dpop_proof")


def _public_refresh(world: World, *dpop: str, token: str) -> httpx.Response:
    return web.post(
        world.url + "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": world.spa["client_id"],
        },
        headers=[("DPoP", value) for value in dpop],
        timeout=10,
    )


def test_a_public_clients_refresh_tokens_are_bound_to_the_key(world: World) -> None:
    grant = make_code(world, world.spa)
    response = web.post(
        world.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "code_verifier": grant.verifier,
            "client_id": world.spa["client_id"],
        },
        headers={"DPoP": proof(world)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    refresh = body["refresh_token"]

    assert error_of(_public_refresh(world, token=refresh)) == (400, "invalid_grant")
    other = _public_refresh(world, proof(world, EC_KEY_2), token=refresh)
    assert error_of(other) == (400, "invalid_grant")
    assert "DPoP key" in other.json()["error_description"]

    # Not spent by the refusals: the right key still refreshes, and the successor is bound too.
    ok = _public_refresh(world, proof(world), token=refresh)
    assert ok.status_code == 200, ok.text
    assert ok.json()["token_type"] == "DPoP"
    assert unverified_claims(ok.json()["access_token"])["cnf"] == {
        "jkt": thumbprint(public_jwk(EC_KEY))
    }
    successor = ok.json()["refresh_token"]
    assert error_of(_public_refresh(world, token=successor)) == (400, "invalid_grant")
    assert _public_refresh(world, proof(world), token=successor).status_code == 200


def test_a_confidential_clients_refresh_tokens_are_not_bound(world: World) -> None:
    grant = make_code(world, world.web)
    first = web.post(
        world.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "code_verifier": grant.verifier,
        },
        auth=(world.web["client_id"], world.web["client_secret"]),
        headers={"DPoP": proof(world)},
        timeout=10,
    )
    assert first.status_code == 200, first.text
    assert first.json()["token_type"] == "DPoP"
    response = post_token(
        world, world.web, grant_type="refresh_token", refresh_token=first.json()["refresh_token"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_a_dpop_client_must_send_a_proof(world: World) -> None:
    client = json.loads(
        world.stack.cli(
            "clients", "create", "--name", "bound", "--scope", "photos:read",
            "--audience", "photos", "--dpop", "--json",
        ).stdout
    )  # fmt: skip
    assert client["dpop_bound_access_tokens"] is True
    response = cc(world, client)
    assert error_of(response) == (400, "invalid_request")
    assert "DPoP proof" in response.json()["error_description"]
    bound = cc(world, client, proof(world))
    assert bound.status_code == 200, bound.text
    assert bound.json()["token_type"] == "DPoP"


def test_an_ordinary_client_registration_says_no_dpop(service: dict[str, Any]) -> None:
    assert service["dpop_bound_access_tokens"] is False


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
def test_metadata_lists_the_proof_algorithms(world: World, path: str) -> None:
    document = web.get(world.url + path, timeout=10).json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "RS256"]


def test_the_code_grant_without_a_proof_stays_bearer(world: World) -> None:
    response = redeem(world, world.web, make_code(world, world.web))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_the_accepted_algorithms_are_a_setting(stack: Stack) -> None:
    """ISSUER_DPOP_ALGS=ES256: an RS256 proof is refused, metadata lists ES256 alone."""
    stack.issuer(ISSUER_DPOP_ALGS="ES256").start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    url = stack.issuer_url + "/token"

    def post(key: Any, alg: str) -> httpx.Response:
        payload = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": url, "iat": int(time.time())}
        return web.post(
            url,
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            headers={"DPoP": make_proof(key, alg, payload=payload)},
            timeout=10,
        )

    refused = post(RSA_KEY, "RS256")
    assert error_of(refused) == (400, "invalid_dpop_proof")
    assert post(EC_KEY, "ES256").json()["token_type"] == "DPoP"
    metadata = web.get(stack.issuer_url + "/.well-known/openid-configuration", timeout=10)
    assert metadata.json()["dpop_signing_alg_values_supported"] == ["ES256"]


def test_server_nonces_when_switched_on(stack: Stack) -> None:
    """ISSUER_DPOP_NONCE=1: a proof without the nonce is 400 use_dpop_nonce with DPoP-Nonce; with
    it, a bound token; a replica on the same secret accepts the nonce."""
    first = stack.issuer(ISSUER_DPOP_NONCE="1")
    first.start()
    second = stack.issuer_replica("b", ISSUER_DPOP_NONCE="1")
    second.start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    htu = stack.issuer_url + "/token"

    def post(base: str, dpop: str) -> httpx.Response:
        return web.post(
            base + "/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            headers={"DPoP": dpop},
            timeout=10,
        )

    def signed(**extra: str) -> str:
        payload = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": htu, "iat": int(time.time())}
        return make_proof(EC_KEY, "ES256", payload={**payload, **extra})

    without = signed()
    asked = post(stack.issuer_url, without)
    assert error_of(asked) == (400, "use_dpop_nonce")
    nonce = asked.headers["DPoP-Nonce"]
    wrong = post(stack.issuer_url, signed(nonce="not-the-nonce"))
    assert error_of(wrong) == (400, "use_dpop_nonce")
    assert wrong.headers["DPoP-Nonce"]  # the current one (the same, bar a slot change)

    bound = post(stack.issuer_url, signed(nonce=nonce))
    assert bound.status_code == 200, bound.text
    assert bound.json()["token_type"] == "DPoP"
    # The replica (its htu is the issuer's public URL, ISSUER_URL, like the first one's).
    assert post(second.url, signed(nonce=nonce)).json()["token_type"] == "DPoP"
    # Without DPoP, nothing changes.
    plain = web.post(
        htu,
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert plain.json()["token_type"] == "Bearer"


def _bound_user_token(world: World) -> str:
    grant = make_code(world, world.web)
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "redirect_uri": REDIRECT,
        "code_verifier": grant.verifier,
    }
    response = web.post(
        world.url + "/token",
        data=form,
        auth=(world.web["client_id"], world.web["client_secret"]),
        headers={"DPoP": proof(world)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    return str(response.json()["access_token"])


def _userinfo_proof(world: World, token: str, key: Any = EC_KEY, **changes: Any) -> str:
    payload = {
        "jti": str(uuid.uuid4()),
        "htm": "GET",
        "htu": world.url + "/userinfo",
        "iat": int(time.time()),
        "ath": access_token_hash(token),
        **changes,
    }
    return make_proof(key, "ES256", payload=payload)


def test_userinfo_takes_a_bound_token_only_with_a_proof_by_its_key(world: World) -> None:
    token = _bound_user_token(world)
    url = world.url + "/userinfo"
    as_bearer = web.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert as_bearer.status_code == 401
    assert 'error="invalid_token"' in as_bearer.headers["www-authenticate"]
    good = web.get(
        url,
        headers={"Authorization": f"DPoP {token}", "DPoP": _userinfo_proof(world, token)},
        timeout=10,
    )
    assert good.status_code == 200, good.text
    assert good.json()["sub"] == f"user:{world.user_id}"
    for bad in (
        _userinfo_proof(world, token, key=EC_KEY_2),  # another key
        _userinfo_proof(world, token, ath="A" * 43),  # another token's hash
        _userinfo_proof(world, token, htu=world.url + "/token"),  # another URL
    ):
        refused = web.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": bad}, timeout=10)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_dpop_proof"
        assert refused.headers["www-authenticate"].startswith('DPoP realm="issuer"')
    no_proof = web.get(url, headers={"Authorization": f"DPoP {token}"}, timeout=10)
    assert no_proof.status_code == 401


def test_userinfo_refuses_an_unbound_token_sent_as_dpop(world: World) -> None:
    token = redeem(world, world.web, make_code(world, world.web)).json()["access_token"]
    response = web.get(
        world.url + "/userinfo",
        headers={"Authorization": f"DPoP {token}", "DPoP": _userinfo_proof(world, token)},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_the_admin_api_refuses_a_bound_token(world: World) -> None:
    admin = world.stack.create_client(scope="issuer:admin", audiences=["issuer"])
    response = web.post(
        world.url + "/token",
        data={"grant_type": "client_credentials", "audience": "issuer"},
        auth=(admin["client_id"], admin["client_secret"]),
        headers={"DPoP": proof(world)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    bound = response.json()["access_token"]
    plain = cc(world, admin).json()["access_token"]
    headers = {"Authorization": f"Bearer {bound}"}
    refused = web.get(world.url + "/admin/keys", headers=headers, timeout=10)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    ok = web.get(
        world.url + "/admin/keys", headers={"Authorization": f"Bearer {plain}"}, timeout=10
    )
    assert ok.status_code == 200, ok.text
