"""Token revocation (RFC 7009) at POST /revoke."""

from __future__ import annotations

import pytest

from tests.issuer.conftest import App


def test_revoking_a_refresh_token_ends_its_family(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    rt1 = app.login(creds, "alice")["refresh_token"]
    rt2 = app.refresh(creds, rt1).json()["refresh_token"]

    response = app.post("/revoke", {"token": rt2, "token_type_hint": "refresh_token"}, creds=creds)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    refused = app.refresh(creds, rt2)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "refresh_family_revoked" in app.audit_events()


def test_revoking_an_older_token_of_the_family_ends_the_newest_too(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    rt1 = app.login(creds, "alice")["refresh_token"]
    rt2 = app.refresh(creds, rt1).json()["refresh_token"]
    assert app.post("/revoke", {"token": rt1}, creds=creds).status_code == 200
    assert app.refresh(creds, rt2).status_code == 400


def test_a_wrong_hint_does_not_stop_the_revocation(app: App) -> None:
    # RFC 7009 §2.1: a wrong hint makes the server look further, it does not skip the token.
    creds = app.new_client()
    app.new_user("alice")
    rt = app.login(creds, "alice")["refresh_token"]
    response = app.post("/revoke", {"token": rt, "token_type_hint": "access_token"}, creds=creds)
    assert response.status_code == 200
    assert app.refresh(creds, rt).status_code == 400


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "x" * 5000,
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        "\u00e9\u00e8 \t%00",
        "dGhpcyBpcyBub3QgYSByZWZyZXNoIHRva2VuIGF0IGFsbCBubyBzaXI",
    ],
)
def test_unknown_and_garbage_tokens_get_200(app: App, token: str) -> None:
    creds = app.new_client()
    response = app.post("/revoke", {"token": token, "token_type_hint": "whatever"}, creds=creds)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_a_client_cannot_revoke_another_clients_token(app: App) -> None:
    owner = app.new_client()
    other = app.new_client()
    app.new_user("alice")
    rt = app.login(owner, "alice")["refresh_token"]
    # Answered 200 like any token the caller does not own (RFC 7009 §2.2: nothing to learn)...
    assert app.post("/revoke", {"token": rt}, creds=other).status_code == 200
    # ...and nothing happened to it.
    assert app.refresh(owner, rt).status_code == 200


def test_revocation_needs_client_authentication(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    rt = app.login(creds, "alice")["refresh_token"]
    anonymous = app.post("/revoke", {"token": rt})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    wrong = app.post("/revoke", {"token": rt, "client_id": creds.client_id, "client_secret": "x"})
    assert wrong.status_code == 401
    assert app.refresh(creds, rt).status_code == 200


def test_missing_token_parameter_is_invalid_request(app: App) -> None:
    creds = app.new_client()
    response = app.post("/revoke", {"token_type_hint": "refresh_token"}, creds=creds)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revoking_an_access_token_makes_it_inactive_here(app: App) -> None:
    """Issue 17: /revoke of an access token of the revoking client revokes it (the resource
    services learn of it through GET /events: tests/issuer/test_events_emission.py)."""
    creds = app.new_client()
    access = app.token(creds, grant_type="client_credentials").json()["access_token"]
    other = app.token(creds, grant_type="client_credentials").json()["access_token"]
    response = app.post(
        "/revoke", {"token": access, "token_type_hint": "access_token"}, creds=creds
    )
    assert response.status_code == 200
    assert app.introspect(creds, access) == {"active": False}
    assert app.introspect(creds, other)["active"] is True


def test_a_client_cannot_revoke_another_clients_access_token(app: App) -> None:
    owner, stranger = app.new_client(), app.new_client()
    access = app.token(owner, grant_type="client_credentials").json()["access_token"]
    response = app.post("/revoke", {"token": access}, creds=stranger)
    assert response.status_code == 200  # RFC 7009 §2.2: answered the same
    assert app.introspect(owner, access)["active"] is True
