"""Client and user authentication: one answer for every failure, and the same work behind it."""

from __future__ import annotations

import base64

import httpx
import pytest

import issuer.accounts
import issuer.passwords
from tests.issuer.conftest import PASSWORD, App, basic

COMPARED_HEADERS = ("content-type", "cache-control", "pragma", "www-authenticate", "retry-after")


def _shape(response: httpx.Response) -> tuple[int, object, dict[str, str | None]]:
    return (
        response.status_code,
        response.json(),
        {h: response.headers.get(h) for h in COMPARED_HEADERS},
    )


def test_basic_and_post_both_authenticate(app: App) -> None:
    creds = app.new_client()
    assert app.token(creds, grant_type="client_credentials").status_code == 200
    post = app.post(
        "/token",
        {
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert post.status_code == 200


def test_unknown_client_and_wrong_secret_get_the_same_response(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = app.new_client()
    compared: list[tuple[str, str]] = []
    real = issuer.accounts.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(issuer.accounts.hmac, "compare_digest", spy)
    form = {"grant_type": "client_credentials"}
    wrong = app.post("/token", form, headers=basic(creds.client_id, "wrong-secret"))
    unknown = app.post("/token", form, headers=basic("c-does-not-exist", creds.client_secret))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert _shape(wrong) == _shape(unknown)
    # Both went through one constant-time comparison of equal-length digests (the unknown
    # client against a dummy hash), not an early return.
    assert len(compared) == 2
    assert all(len(a) == len(b) == 64 for a, b in compared)


def test_disabled_client_reads_like_a_wrong_secret(app: App) -> None:
    creds = app.new_client()
    with app.issuer.tokens.accounts.engine.begin() as conn:
        from issuer.db import clients

        conn.execute(
            clients.update().where(clients.c.client_id == creds.client_id).values(disabled=True)
        )
    app.issuer.tokens._client_cache.clear()
    form = {"grant_type": "client_credentials"}
    disabled = app.post("/token", form, creds=creds)
    wrong = app.post("/token", form, headers=basic(creds.client_id, "nope"))
    assert _shape(disabled) == _shape(wrong)


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic "],
)
def test_malformed_basic_credentials_are_invalid_client(app: App, authorization: str) -> None:
    response = app.post(
        "/token", {"grant_type": "client_credentials"}, headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_no_credentials_is_invalid_client(app: App) -> None:
    response = app.post("/token", {"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unknown_user_wrong_password_and_disabled_user_read_alike(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = app.new_client()
    app.new_user("alice")
    app.new_user("dora")
    app.issuer.tokens.accounts.set_user_disabled("dora", True)

    verified: list[str | None] = []
    real = issuer.passwords.verify_password

    def spy(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(issuer.accounts, "verify_password", spy)

    def attempt(username: str, password: str) -> httpx.Response:
        return app.token(creds, grant_type="password", username=username, password=password)

    unknown = attempt("mallory", PASSWORD)
    wrong = attempt("alice", "not the password")
    disabled = attempt("dora", PASSWORD)  # the right password, but disabled
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_grant"
    assert _shape(unknown) == _shape(wrong) == _shape(disabled)
    # Every attempt ran exactly one argon2 verification; the unknown user against the dummy.
    assert len(verified) == 3
    assert verified[0] is None
    assert all(h is not None and h.startswith("$argon2id$") for h in verified[1:])
    assert attempt("alice", PASSWORD).status_code == 200


def test_dummy_password_hash_is_argon2id() -> None:
    assert issuer.passwords._DUMMY_HASH.startswith("$argon2id$")
    assert issuer.passwords.verify_password(None, "keyhouse-dummy-password-for-timing") is False
