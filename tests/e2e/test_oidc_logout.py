"""`/userinfo` and `/logout` (RP-Initiated Logout) at a real issuer process, with tokens from
the code grant (codes and sessions made as /authorize and the login page make them,
oidc_world.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.oidc_world import (
    AFTER_LOGOUT,
    SESSION_COOKIE,
    World,
    make_code,
    make_world,
    post_token,
    redeem,
)
from tests.support import web

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory)


# -- /userinfo ---------------------------------------------------------------------------------


def _userinfo(world: World, token: str | None, method: str = "GET") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return web.request(method, world.url + "/userinfo", headers=headers, timeout=10)


def test_userinfo_answers_sub_and_username(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web)).json()
    for method in ("GET", "POST"):
        response = _userinfo(world, body["access_token"], method)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "sub": f"user:{world.user_id}",
            "preferred_username": "alice",
        }
        assert response.headers["cache-control"] == "no-store"


def test_userinfo_without_profile_answers_sub_only(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web, scopes="openid photos:read")).json()
    assert _userinfo(world, body["access_token"]).json() == {"sub": f"user:{world.user_id}"}


def test_userinfo_without_a_token(world: World) -> None:
    response = _userinfo(world, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="issuer"'


def test_userinfo_with_a_bad_token(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web)).json()
    head, payload, signature = body["access_token"].split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    for token in (tampered, body["id_token"], "not-a-token"):
        response = _userinfo(world, token)
        assert response.status_code == 401, token
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="issuer", error="invalid_token"')


def test_userinfo_without_openid_is_insufficient_scope(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web, scopes="photos:read")).json()
    response = _userinfo(world, body["access_token"])
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="openid"' in challenge


def test_userinfo_refuses_a_revoked_access_token(world: World) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    assert _userinfo(world, body["access_token"]).status_code == 200
    redeem(world, world.web, grant)  # the replay revokes it
    assert _userinfo(world, body["access_token"]).status_code == 401


def test_userinfo_refuses_a_token_in_the_query(world: World) -> None:
    body = redeem(world, world.web, make_code(world, world.web)).json()
    response = web.get(
        world.url + "/userinfo",
        params={"access_token": body["access_token"]},
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


# -- /logout -----------------------------------------------------------------------------------


def _logout(
    world: World, cookie: str | None = None, method: str = "GET", **params: str
) -> httpx.Response:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    if method == "GET":
        return web.get(world.url + "/logout", params=params, headers=headers, timeout=10)
    return web.post(world.url + "/logout", data=params, headers=headers, timeout=10)


def _refresh_ok(world: World, refresh_token: str) -> bool:
    response = post_token(world, world.web, grant_type="refresh_token", refresh_token=refresh_token)
    return response.status_code == 200


def test_logout_with_hint_ends_the_session_and_its_refresh_tokens(world: World) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    other = redeem(world, world.web, make_code(world, world.web)).json()  # another session
    response = _logout(
        world,
        grant.cookie,
        id_token_hint=body["id_token"],
        post_logout_redirect_uri=AFTER_LOGOUT,
        state="s-123",
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == AFTER_LOGOUT
    assert parse_qs(location.query) == {"state": ["s-123"]}
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in c for c in cleared)
    assert world.sessions.find(grant.cookie, time.time()) is None
    assert not _refresh_ok(world, body["refresh_token"])
    assert _refresh_ok(world, other["refresh_token"])  # another session's family lives on


def test_logout_with_an_unregistered_redirect_shows_an_error_and_ends_nothing(
    world: World,
) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    response = _logout(
        world,
        grant.cookie,
        id_token_hint=body["id_token"],
        post_logout_redirect_uri="https://evil.example/landing",
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "text/html" in response.headers["content-type"]
    assert "not registered" in response.text
    assert "evil.example" not in response.headers.get("content-security-policy", "")
    assert world.sessions.find(grant.cookie, time.time()) is not None
    assert _refresh_ok(world, body["refresh_token"])


def test_logout_with_another_clients_redirect_uri_is_refused(world: World) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    # AFTER_LOGOUT is registered for both; client_id naming another client than the hint's.
    response = _logout(
        world,
        grant.cookie,
        id_token_hint=body["id_token"],
        client_id=world.other["client_id"],
        post_logout_redirect_uri=AFTER_LOGOUT,
    )
    assert response.status_code == 400
    assert "location" not in response.headers


def test_logout_with_a_forged_hint_is_refused(world: World) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    head, payload, signature = body["id_token"].split(".")
    response = _logout(world, grant.cookie, id_token_hint=f"{head}.{payload}.{signature[:-4]}AAAA")
    assert response.status_code == 400
    assert world.sessions.find(grant.cookie, time.time()) is not None


def test_logout_without_hint_asks_first_and_a_confirmed_post_ends_the_session(
    world: World,
) -> None:
    grant = make_code(world, world.web)
    body = redeem(world, world.web, grant).json()
    asked = _logout(world, grant.cookie, client_id=world.web["client_id"], state="xyz")
    assert asked.status_code == 200
    assert 'id="confirm-logout"' in asked.text
    assert asked.headers["content-security-policy"].startswith("default-src 'none'")
    assert world.sessions.find(grant.cookie, time.time()) is not None  # nothing ended yet
    # A cross-site page cannot answer: it lacks the confirmation bound to the cookie.
    forged = _logout(world, grant.cookie, "POST", confirm="0" * 64)
    assert forged.status_code == 200
    assert 'id="confirm-logout"' in forged.text
    assert world.sessions.find(grant.cookie, time.time()) is not None
    confirm = asked.text.split('name="confirm" value="', 1)[1].split('"', 1)[0]
    done = _logout(world, grant.cookie, "POST", confirm=confirm)
    assert done.status_code == 200
    assert 'id="logged-out"' in done.text
    assert world.sessions.find(grant.cookie, time.time()) is None
    assert not _refresh_ok(world, body["refresh_token"])


def test_logout_without_a_session_just_says_signed_out(world: World) -> None:
    response = _logout(world)
    assert response.status_code == 200
    assert 'id="logged-out"' in response.text


def test_logout_page_on_the_error_path_is_html_not_json(world: World) -> None:
    response = _logout(world, "POST_BAD", "POST", id_token_hint="x", state="a" * 2000)
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
