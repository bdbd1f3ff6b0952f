"""Client and user authentication: one answer for every failure, and the same work behind it."""

from __future__ import annotations

import base64

import httpx
import pytest

import issuer.accounts
import issuer.client_auth
import issuer.passwords
from tests.issuer.conftest import PASSWORD, App, Creds, MakeApp, basic

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


# -- malformed client credentials: 401 invalid_client, throttled, audited, counted ------------


def _b64(raw: bytes) -> bytes:
    return b"Basic " + base64.b64encode(raw)


# Every shape of a broken ``Authorization: Basic`` value, as the bytes on the wire.
MALFORMED_BASIC = {
    "non-ascii header": b"Basic \xe9",
    "non-ascii in base64": b"Basic YWJj\xff",
    "bad base64": b"Basic !!!not-base64!!!",
    "bad base64 padding": b"Basic YWJjZA",
    "no colon": _b64(b"no-colon"),
    "nothing": b"Basic",
    "empty": b"Basic ",
    "not utf-8 after base64": _b64(b"\xe9:secret"),
    "bad percent-encoding in id": _b64(b"c-%zz:secret"),
    "bad percent-encoding in secret": _b64(b"c-x:%4"),
    "percent-encoding not utf-8": _b64(b"c-x:%e9%28"),
    "empty id": _b64(b":secret"),
    "empty id and secret": _b64(b":"),
    "control character in id": _b64(b"c-\x00:secret"),
    "encoded control character in secret": _b64(b"c-x:se%0Acret"),
    "non-ascii id": _b64("c-é:secret".encode()),
}


@pytest.mark.parametrize("header", MALFORMED_BASIC.values(), ids=MALFORMED_BASIC.keys())
def test_client_credentials_refuses_malformed_basic(header: bytes) -> None:
    with pytest.raises(issuer.client_auth.InvalidClient):
        # Header values reach the app decoded as latin-1, as Starlette and the /token path do.
        issuer.client_auth.client_credentials({}, header.decode("latin-1"))


@pytest.mark.parametrize(
    "form",
    [
        {"client_id": "", "client_secret": "x"},
        {"client_id": "c-\x00", "client_secret": "x"},
        {"client_id": "c-é", "client_secret": "x"},
        {"client_id": "c-x", "client_secret": "s\ne"},
    ],
)
def test_client_credentials_refuses_malformed_post(form: dict[str, str]) -> None:
    with pytest.raises(issuer.client_auth.InvalidClient):
        issuer.client_auth.client_credentials(form, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"c-abc:s3cret", ("c-abc", "s3cret")),
        (b"c-abc:a:b", ("c-abc", "a:b")),  # the first colon splits
        (b"c%3Aid:p%25ss+word", ("c:id", "p%ss word")),  # form-urlencoded halves (§2.3.1)
        (b"c-abc:", ("c-abc", "")),
    ],
)
def test_client_credentials_decodes_well_formed_basic(
    raw: bytes, expected: tuple[str, str]
) -> None:
    got = issuer.client_auth.client_credentials({}, _b64(raw).decode())
    assert got == (*expected, "client_secret_basic")


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_malformed_basic_is_401_invalid_client_with_a_basic_challenge(app: App, path: str) -> None:
    form = {"grant_type": "client_credentials"} if path == "/token" else {"token": "x"}
    for name, header in MALFORMED_BASIC.items():
        response = app.post(path, form, headers={"Authorization": header})
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"] == "invalid_client", name
        assert response.headers["www-authenticate"] == 'Basic realm="keyhouse"', name
        assert response.headers["cache-control"] == "no-store", name


def test_malformed_basic_is_audited_throttled_per_address_and_counted(make_app: MakeApp) -> None:
    app = make_app(login_max_failures=3, login_max_failures_per_address=4)
    bad = {"Authorization": b"Basic \xe9"}
    for path, form in [
        ("/token", {"grant_type": "client_credentials"}),
        ("/revoke", {"token": "x"}),
        ("/introspect", {"token": "x"}),
        ("/token", {"grant_type": "client_credentials"}),
    ]:
        assert app.post(path, form, headers=bad).status_code == 401
    events = app.issuer.tokens.audit.recent(100)
    failed = [e for e in events if e.event == "client_auth_failed"]
    assert len(failed) == 4
    assert {e.detail for e in failed} == {"missing or malformed client credentials"}
    assert {e.client_id for e in failed} == {None}
    assert [e.event for e in events].count("auth_throttled") == 1
    # The address reached its limit (malformed attempts name no client, so they count against
    # the address alone): its next failed attempt is 429, whatever client it names.
    blocked = app.token(Creds("c-other", "x"), grant_type="client_credentials")
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "slow_down"
    metrics = app.http.get("/metrics").text
    assert 'keyhouse_issuer_token_errors_total{error="invalid_client"} 2.0' in metrics
    assert "server_error" not in metrics
