"""The issuer's HTTP surface in-process: metadata, JWKS caching headers, /token errors, admin."""

from __future__ import annotations

import logging

import jwt as pyjwt
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from issuer import db
from tests.issuer.conftest import ISSUER, MakeApp


def _token(client: TestClient, demo: dict[str, str], **form: str) -> dict[str, object]:
    response = client.post("/token", data=form, auth=(demo["client_id"], demo["client_secret"]))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_metadata_both_paths(client: TestClient, demo: dict[str, str]) -> None:
    a = client.get("/.well-known/oauth-authorization-server").json()
    b = client.get("/.well-known/openid-configuration").json()
    assert a == b
    assert a["issuer"] == ISSUER
    assert a["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert a["token_endpoint"] == f"{ISSUER}/token"
    assert set(a["grant_types_supported"]) == {
        "client_credentials",
        "password",
        "refresh_token",
        "authorization_code",
    }
    assert "photos:read" in a["scopes_supported"]
    # OpenID Connect Discovery 1.0 §3 and what issue 16 added.
    assert a["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert a["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert a["end_session_endpoint"] == f"{ISSUER}/logout"
    assert a["response_types_supported"] == ["code"]
    assert a["response_modes_supported"] == ["query"]
    assert a["code_challenge_methods_supported"] == ["S256"]
    assert a["id_token_signing_alg_values_supported"] == ["RS256"]
    assert a["subject_types_supported"] == ["public"]
    assert a["authorization_response_iss_parameter_supported"] is True
    assert {"sub", "aud", "nonce", "auth_time", "sid", "at_hash"} <= set(a["claims_supported"])
    assert {"openid", "profile"} <= set(a["scopes_supported"])
    assert "none" in a["token_endpoint_auth_methods_supported"]
    assert "none" not in a["introspection_endpoint_auth_methods_supported"]
    for key in (
        "revocation_endpoint",
        "introspection_endpoint",
        "token_endpoint_auth_methods_supported",
    ):
        assert key in a


def test_jwks_caching_headers_and_304(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    etag = response.headers["etag"]
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert set(keys[0]) == {"kty", "use", "alg", "kid", "n", "e"}
    again = client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = client.get("/.well-known/jwks.json", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200


def test_client_credentials_token(client: TestClient, demo: dict[str, str]) -> None:
    body = _token(
        client, demo, grant_type="client_credentials", audience="photos", scope="photos:read"
    )
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "photos:read"
    assert "refresh_token" not in body
    claims = pyjwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert claims["sub"] == "client:c1"
    assert claims["aud"] == "photos"
    assert claims["iss"] == ISSUER
    assert set(claims) >= {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"}


def test_resource_parameter_and_client_secret_post(
    client: TestClient, demo: dict[str, str]
) -> None:
    response = client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "resource": "photos",
            "client_id": demo["client_id"],
            "client_secret": demo["client_secret"],
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    claims = pyjwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "photos"


def test_password_grant_subject_is_the_user(client: TestClient, demo: dict[str, str]) -> None:
    body = _token(
        client,
        demo,
        grant_type="password",
        username="alice",
        password="alice-password",
        audience="photos",
    )
    claims = pyjwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert claims["sub"].startswith("user:")
    assert claims["client_id"] == "c1"
    assert body["scope"] == "photos:read"  # the client's scopes narrowed to the user's
    assert len(str(body["refresh_token"])) >= 43  # 256 bits, base64url


def _error(client: TestClient, demo: dict[str, str] | None, **form: str) -> tuple[int, str]:
    auth = (demo["client_id"], demo["client_secret"]) if demo else None
    response = client.post("/token", data=form, auth=auth)
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()["error"]


def test_error_codes(client: TestClient, demo: dict[str, str]) -> None:
    assert _error(client, demo) == (400, "invalid_request")
    assert _error(client, demo, grant_type="client_credentials") == (400, "invalid_request")
    assert _error(client, demo, grant_type="urn:example:other") == (400, "unsupported_grant_type")
    # A grant the issuer has but this client was not registered for.
    assert _error(client, demo, grant_type="authorization_code") == (400, "unauthorized_client")
    assert _error(
        client, demo, grant_type="client_credentials", audience="photos", scope="photos:delete"
    ) == (400, "invalid_scope")
    assert _error(
        client, demo, grant_type="password", username="alice", password="wrong", audience="photos"
    ) == (400, "invalid_grant")
    assert _error(client, demo, grant_type="refresh_token", refresh_token="nope") == (
        400,
        "invalid_grant",
    )
    assert _error(client, demo, grant_type="client_credentials", audience="contacts") == (
        400,
        "invalid_target",
    )
    bad = {"client_id": "c1", "client_secret": "wrong"}
    assert _error(client, bad, grant_type="client_credentials") == (401, "invalid_client")


def test_invalid_client_has_challenge(client: TestClient, demo: dict[str, str]) -> None:
    response = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("nobody", "x")
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


def test_unauthorized_client(client: TestClient, accounts: object) -> None:
    from issuer.accounts import AccountStore
    from shared.scopes import parse_scope

    assert isinstance(accounts, AccountStore)
    _c, secret = accounts.create_client(
        name="cc-only",
        scopes=parse_scope("photos:read"),
        audiences=["photos"],
        grant_types=["client_credentials"],
        now=0.0,
        client_id="cc",
    )
    response = client.post(
        "/token",
        data={"grant_type": "password", "username": "a", "password": "b"},
        auth=("cc", secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_get_token_is_405(client: TestClient) -> None:
    response = client.get("/token")
    assert response.status_code == 405
    assert response.headers["cache-control"] == "no-store"


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_admin_api_requires_admin_token(client: TestClient, demo: dict[str, str]) -> None:
    assert client.get("/admin/keys").status_code == 401
    photos = _token(
        client, demo, grant_type="client_credentials", audience="photos", scope="photos:read"
    )["access_token"]
    wrong_aud = client.get("/admin/keys", headers={"Authorization": f"Bearer {photos}"})
    assert wrong_aud.status_code == 401
    no_scope = _token(
        client, demo, grant_type="client_credentials", audience="issuer", scope="photos:read"
    )["access_token"]
    denied = client.get("/admin/keys", headers={"Authorization": f"Bearer {no_scope}"})
    assert denied.status_code == 403
    assert denied.json()["error"] == "insufficient_scope"
    admin = _token(
        client, demo, grant_type="client_credentials", audience="issuer", scope="issuer:admin"
    )["access_token"]
    headers = {"Authorization": f"Bearer {admin}"}
    keys = client.get("/admin/keys", headers=headers).json()["keys"]
    assert len(keys) == 1
    old_kid = keys[0]["kid"]
    rotated = client.post("/admin/keys/rotate", headers=headers)
    assert rotated.status_code == 201
    published = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert published == {old_kid, rotated.json()["kid"]}
    revoked = client.post(f"/admin/keys/{old_kid}/revoke", headers=headers)
    assert revoked.status_code == 200
    published = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kid not in published
    # The admin token itself was signed by the revoked key: refused from now on.
    assert client.get("/admin/keys", headers=headers).status_code == 401
    fresh = _token(
        client, demo, grant_type="client_credentials", audience="issuer", scope="issuer:admin"
    )["access_token"]
    headers = {"Authorization": f"Bearer {fresh}"}
    assert client.post("/admin/keys/nope/revoke", headers=headers).status_code == 404


def test_healthz_and_metrics(client: TestClient, demo: dict[str, str]) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    _token(client, demo, grant_type="client_credentials", audience="photos")
    text = client.get("/metrics").text
    assert 'keyhouse_issuer_tokens_issued_total{grant_type="client_credentials"} 1.0' in text
    assert "keyhouse_issuer_published_keys 1.0" in text
    assert 'keyhouse_issuer_jwks_requests_total{status="200"}' not in text
    client.get("/.well-known/jwks.json")
    assert client.get("/admin/keys").status_code == 401
    text = client.get("/metrics").text
    assert 'keyhouse_issuer_jwks_requests_total{status="200"} 1.0' in text
    assert 'keyhouse_issuer_token_verifications_total{result="missing_token"} 1.0' in text


def test_metrics_count_tokens_and_errors_per_label(
    client: TestClient, demo: dict[str, str]
) -> None:
    for _ in range(3):
        _token(client, demo, grant_type="client_credentials", audience="photos")
    bad_secret = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(demo["client_id"], "wrong")
    )
    assert bad_secret.status_code == 401
    no_grant = client.post("/token", data={}, auth=(demo["client_id"], demo["client_secret"]))
    assert no_grant.status_code == 400
    client.post("/token", data={}, auth=(demo["client_id"], demo["client_secret"]))
    text = client.get("/metrics").text
    assert 'keyhouse_issuer_tokens_issued_total{grant_type="client_credentials"} 3.0' in text
    assert 'keyhouse_issuer_token_errors_total{error="invalid_client"} 1.0' in text
    assert 'keyhouse_issuer_token_errors_total{error="invalid_request"} 2.0' in text


def test_admin_refusals_carry_bearer_challenges(client: TestClient, demo: dict[str, str]) -> None:
    """RFC 6750 §3 on the admin API, as on the resource services: the 403 names the scope."""
    missing = client.get("/admin/keys")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="issuer"'
    no_scope = _token(
        client, demo, grant_type="client_credentials", audience="issuer", scope="photos:read"
    )["access_token"]
    denied = client.get("/admin/keys", headers={"Authorization": f"Bearer {no_scope}"})
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        'Bearer realm="issuer", error="insufficient_scope", '
        'error_description="requires scope issuer:admin", scope="issuer:admin"'
    )
    assert denied.headers["cache-control"] == "no-store"
    assert denied.headers["pragma"] == "no-cache"


def test_a_key_sealed_under_another_secret_is_a_generic_500_with_the_detail_logged(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Replica b rotates; the new key's sealed bytes then fail to open on replica a (as with a
    wrong ISSUER_SECRET_KEY). a's client is told "internal error"; the log says which key."""
    a = make_app()
    b = make_app(clock=a.clock)
    creds = a.new_client(scope="issuer:admin", audiences=("issuer",))
    admin = a.token(creds, grant_type="client_credentials", audience="issuer").json()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    new_kid = b.http.post("/admin/keys/rotate?now=true", headers=headers).json()["kid"]
    engine = a.issuer.keyring.repo.engine
    with engine.begin() as conn:
        sealed = conn.execute(
            select(db.signing_keys.c.private_key).where(db.signing_keys.c.kid == new_kid)
        ).scalar_one()
        conn.execute(
            update(db.signing_keys)
            .where(db.signing_keys.c.kid == new_kid)
            .values(private_key=sealed[:-1] + bytes([sealed[-1] ^ 1]))
        )
    response = a.http.post("/admin/keys/rotate", headers=headers)  # a reloads its keys
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "internal error"}
    assert response.headers["cache-control"] == "no-store"
    assert new_kid not in response.text
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"cannot decrypt signing key {new_kid}" in r.getMessage() for r in logged)
