"""End to end with real processes: the issuer and two resource services on loopback sockets."""

from __future__ import annotations

import time

import httpx
import jwt as pyjwt
import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


def _get(url: str, token: str) -> httpx.Response:
    return web.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _fetches(server_url: str) -> dict[str, int]:
    state = web.get(server_url + "/healthz", timeout=5).json()["jwks"]
    return dict(state["fetches"])


def test_token_from_issuer_works_at_photos_and_not_at_contacts(stack: Stack) -> None:
    stack.issuer().start()
    photos = stack.resource("photos").start()
    contacts = stack.resource("contacts").start()
    client = stack.create_client(scope="photos:read photos:write", audiences=["photos"])
    token = stack.token(client, audience="photos", scope="photos:read")["access_token"]

    who = _get(photos.url + "/whoami", token)
    assert who.status_code == 200
    assert who.json()["claims"]["sub"] == f"client:{client['client_id']}"
    assert _get(photos.url + "/photos", token).status_code == 200

    refused = _get(contacts.url + "/whoami", token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert refused.json()["error"] == "invalid_token"


def test_photos_keeps_verifying_when_the_issuer_is_stopped(stack: Stack) -> None:
    issuer = stack.issuer().start()
    photos = stack.resource("photos").start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    token = stack.token(client)["access_token"]
    assert _get(photos.url + "/photos", token).status_code == 200
    issuer.stop()
    with pytest.raises(httpx.ConnectError):
        web.get(stack.issuer_url + "/healthz", timeout=2)
    for _ in range(20):
        assert _get(photos.url + "/photos", token).status_code == 200


def test_rotation_keeps_old_tokens_and_costs_one_fetch(stack: Stack) -> None:
    stack.issuer().start()
    photos = stack.resource("photos").start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    old = stack.token(client)["access_token"]
    assert _get(photos.url + "/whoami", old).status_code == 200
    before = _fetches(photos.url)

    stack.cli("keys", "rotate", "--now")
    old_kid = pyjwt.get_unverified_header(old)["kid"]
    # The running issuer picks the new key up from the database (its reload loop): wait for a
    # token with another kid, bounded in time (a count of tries ran out once the requests got
    # faster than the reload).
    deadline = time.monotonic() + 30
    while True:
        new = stack.token(client)["access_token"]
        new_kid = pyjwt.get_unverified_header(new)["kid"]
        if new_kid != old_kid or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert new_kid != old_kid

    for _ in range(5):
        assert _get(photos.url + "/whoami", new).status_code == 200
        assert _get(photos.url + "/whoami", old).status_code == 200
    after = _fetches(photos.url)
    assert after.get("ok", 0) - before.get("ok", 0) == 1
    assert after.get("error", 0) == before.get("error", 0)


def test_refresh_rotates_and_replay_is_invalid_grant(stack: Stack) -> None:
    stack.issuer().start()
    client = stack.create_client(
        scope="photos:read", audiences=["photos"], grants=["password", "refresh_token"]
    )
    stack.create_user("alice", "correct horse battery", "photos:read")
    first = stack.token(
        client, grant_type="password", username="alice", password="correct horse battery"
    )
    rt1 = first["refresh_token"]
    second = stack.token(client, grant_type="refresh_token", refresh_token=rt1)
    rt2 = second["refresh_token"]
    assert rt2 != rt1

    replay = web.post(
        stack.issuer_url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt1},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_pyjwt_pyjwkclient_verifies_an_issued_token(stack: Stack) -> None:
    stack.issuer().start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    token = stack.token(client)["access_token"]
    metadata = web.get(stack.issuer_url + "/.well-known/oauth-authorization-server").json()
    jwk_client = pyjwt.PyJWKClient(metadata["jwks_uri"])
    key = jwk_client.get_signing_key_from_jwt(token)
    claims = pyjwt.decode(
        token, key.key, algorithms=["RS256"], audience="photos", issuer=stack.issuer_url
    )
    assert claims["client_id"] == client["client_id"]
    assert pyjwt.get_unverified_header(token)["typ"] == "at+jwt"
