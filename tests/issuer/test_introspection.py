"""Token introspection (RFC 7662) at POST /introspect."""

from __future__ import annotations

import base64
import json

import pytest

from tests.issuer.conftest import App, Creds, MakeApp


def _access(app: App, creds: Creds, **form: str) -> str:
    response = app.token(creds, grant_type="client_credentials", **form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_active_access_token_returns_its_claims(app: App) -> None:
    creds = app.new_client(scope="photos:read photos:write")
    token = _access(app, creds, scope="photos:read")
    response = app.post("/introspect", {"token": token}, creds=creds)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == creds.client_id
    assert body["sub"] == f"client:{creds.client_id}"
    assert body["aud"] == "photos"
    assert body["scope"] == "photos:read"
    assert body["iss"] == app.settings.issuer_url
    assert body["token_type"] == "Bearer"
    for claim in ("exp", "iat", "jti"):
        assert claim in body


def test_active_refresh_token_returns_its_grant(app: App) -> None:
    creds = app.new_client()
    user_id = app.new_user("alice")
    rt = app.login(creds, "alice", scope="photos:read")["refresh_token"]
    body = app.introspect(creds, rt)
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == f"user:{user_id}"
    assert body["scope"] == "photos:read"
    assert body["client_id"] == creds.client_id


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "photos:read photos:write admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_anything_else_is_exactly_active_false(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    login = app.login(creds, "alice")
    used_rt = login["refresh_token"]
    app.refresh(creds, used_rt)
    revoked_rt = app.login(creds, "alice")["refresh_token"]
    app.post("/revoke", {"token": revoked_rt}, creds=creds)
    access = login["access_token"]
    header, payload, _ = access.split(".")

    inactive = [
        "",
        "garbage",
        "a.b.c",
        "x" * 10_000,
        _tamper(access),
        f"{header}.{payload}.",
        used_rt,
        revoked_rt,
        "eyJhbGciOiJub25lIn0.e30.",
    ]
    for token in inactive:
        response = app.post("/introspect", {"token": token}, creds=creds)
        assert response.status_code == 200, token
        assert response.json() == {"active": False}, token


def test_expired_access_and_refresh_tokens_are_inactive(make_app: MakeApp) -> None:
    app = make_app(refresh_token_idle_ttl=1200)
    creds = app.new_client()
    app.new_user("alice")
    login = app.login(creds, "alice")
    app.advance(app.settings.access_token_ttl)  # exactly at exp: no leeway for "active"
    assert app.introspect(creds, login["access_token"]) == {"active": False}
    assert app.introspect(creds, login["refresh_token"])["active"] is True
    app.advance(1200 - app.settings.access_token_ttl)
    assert app.introspect(creds, login["refresh_token"]) == {"active": False}


def test_token_signed_by_a_revoked_key_is_inactive(app: App) -> None:
    creds = app.new_client()
    token = _access(app, creds)
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    app.issuer.admin.revoke(kid)
    app.issuer.keyring.reload()
    assert app.introspect(creds, token) == {"active": False}
    assert "key_revoked" in app.audit_events()


def test_other_clients_learn_nothing_about_foreign_tokens(app: App) -> None:
    owner = app.new_client(audiences=["photos"])
    stranger = app.new_client(audiences=["contacts"], scope="contacts:read")
    resource = app.new_client(audiences=["photos"], grants=["client_credentials"])
    app.new_user("alice")
    login = app.login(owner, "alice")
    assert app.introspect(stranger, login["access_token"]) == {"active": False}
    assert app.introspect(stranger, login["refresh_token"]) == {"active": False}
    # A client serving the token's audience may introspect the access token...
    assert app.introspect(resource, login["access_token"])["active"] is True
    # ...but refresh tokens are only ever the issuing client's business.
    assert app.introspect(resource, login["refresh_token"]) == {"active": False}


@pytest.mark.parametrize(
    "headers_or_form",
    [{}, {"client_id": "nobody", "client_secret": "nothing"}],
)
def test_introspection_needs_client_authentication(
    app: App, headers_or_form: dict[str, str]
) -> None:
    creds = app.new_client()
    token = _access(app, creds)
    response = app.post("/introspect", {"token": token, **headers_or_form})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "active" not in response.json()


def test_missing_token_parameter_is_invalid_request(app: App) -> None:
    creds = app.new_client()
    response = app.post("/introspect", {}, creds=creds)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
