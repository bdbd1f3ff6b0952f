"""Strict request handling on /token, /revoke and /introspect, and one request per error code."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from tests.issuer.conftest import PASSWORD, App, Creds

ENDPOINTS = ["/token", "/revoke", "/introspect"]


def _no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store", response.headers
    assert response.headers.get("pragma") == "no-cache", response.headers


def _valid_form(path: str) -> dict[str, str]:
    return {"grant_type": "client_credentials"} if path == "/token" else {"token": "x"}


def _error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    _no_store(response)


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_405_and_never_cached(app: App, path: str, method: str) -> None:
    response = app.http.request(method, path)
    assert response.status_code == 405
    _no_store(response)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_success_responses_are_never_cached(app: App, path: str) -> None:
    creds = app.new_client()
    response = app.post(path, _valid_form(path), creds=creds)
    assert response.status_code == 200
    _no_store(response)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_oversized_body_is_413_by_declared_length(app: App, path: str) -> None:
    creds = app.new_client()
    body = "grant_type=client_credentials&pad=" + "a" * app.settings.max_body_bytes
    response = app.post(
        path,
        content=body,
        creds=creds,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 413, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_oversized_chunked_body_is_413(app: App, path: str) -> None:
    """No Content-Length to go by: the size is counted while reading (issuer/http.py)."""
    creds = app.new_client()

    def chunks() -> Iterator[bytes]:
        for _ in range(100):  # 100 x 1 KiB, far beyond the 16 KiB cap
            yield b"a" * 1024

    response = app.post(
        path,
        content=chunks(),
        creds=creds,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "content-length" not in response.request.headers
    _error(response, 413, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data; boundary=x", "text/plain", None]
)
def test_only_form_encoding_is_accepted(app: App, path: str, content_type: str | None) -> None:
    creds = app.new_client()
    headers = {"Content-Type": content_type} if content_type else {}
    response = app.post(
        path, content=b'{"grant_type":"client_credentials"}', creds=creds, headers=headers
    )
    _error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_duplicate_parameters_are_invalid_request(app: App, path: str) -> None:
    creds = app.new_client()
    name, value = next(iter(_valid_form(path).items()))
    body = f"{name}={value}&{name}={value}"
    response = app.post(
        path,
        content=body,
        creds=creds,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("param", ["client_secret", "password", "refresh_token", "token"])
def test_credentials_in_the_query_are_refused_and_never_used(
    app: App, path: str, param: str
) -> None:
    creds = app.new_client()
    app.new_user("alice")
    query = {"client_id": creds.client_id, "client_secret": creds.client_secret}
    query[param] = creds.client_secret if param == "client_secret" else PASSWORD
    # Everything the request needs is in the query; the body alone is not enough.
    response = app.http.post(
        path, params=query, data={**_valid_form(path), "client_id": creds.client_id}
    )
    _error(response, 400, "invalid_request")
    # Even with valid credentials in the body, a secret in the URL is refused.
    refused = app.post(path, _valid_form(path), creds=creds, params={param: "x"})
    _error(refused, 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_two_client_authentication_methods_are_invalid_request(app: App, path: str) -> None:
    creds = app.new_client()
    form = {**_valid_form(path), "client_id": creds.client_id, "client_secret": creds.client_secret}
    response = app.post(path, form, creds=creds)
    _error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("body", [b"\xff\xfe=\xff", b"a=%ZZ&&&=", b"=x", b"%00=%00"])
def test_malformed_bodies_are_clear_errors_never_500(app: App, path: str, body: bytes) -> None:
    creds = app.new_client()
    response = app.post(
        path,
        content=body,
        creds=creds,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 400, "invalid_request")


# -- one request per RFC 6749 §5.2 error code ---------------------------------------------------


def test_invalid_client(app: App) -> None:
    response = app.post(
        "/token", {"grant_type": "client_credentials"}, creds=Creds("c-nobody", "nothing")
    )
    _error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_invalid_grant(app: App) -> None:
    creds = app.new_client()
    response = app.token(creds, grant_type="refresh_token", refresh_token="not-a-token")
    _error(response, 400, "invalid_grant")


def test_invalid_scope(app: App) -> None:
    creds = app.new_client(scope="photos:read")
    response = app.token(creds, grant_type="client_credentials", scope="photos:write")
    _error(response, 400, "invalid_scope")


def test_unauthorized_client(app: App) -> None:
    creds = app.new_client(grants=["client_credentials"])
    app.new_user("alice")
    response = app.token(creds, grant_type="password", username="alice", password=PASSWORD)
    _error(response, 400, "unauthorized_client")


def test_unsupported_grant_type(app: App) -> None:
    creds = app.new_client()
    # authorization_code is supported now (issue 16); the device grant is not.
    response = app.token(creds, grant_type="urn:ietf:params:oauth:grant-type:device_code")
    _error(response, 400, "unsupported_grant_type")


def test_invalid_request(app: App) -> None:
    creds = app.new_client()
    _error(app.token(creds), 400, "invalid_request")  # no grant_type


def test_an_unexpected_failure_is_a_json_500_without_details(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """/token is served ahead of the router: its crashes still reach the one 500 handler."""
    creds = app.new_client()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail " + creds.client_secret)

    monkeypatch.setattr(app.issuer.keyring, "signer", broken)
    # A second client on the same (started) app, answering 500s instead of raising them.
    lenient = TestClient(app.http.app, base_url="http://issuer.test", raise_server_exceptions=False)
    lenient.app_state = app.http.app_state  # the started app's lifespan state
    response = lenient.post("/token", data={"grant_type": "client_credentials"}, headers=creds.auth)
    _error(response, 500, "server_error")
    assert "secret detail" not in response.text
    assert creds.client_secret not in caplog.text


def test_token_with_a_trailing_slash_is_not_the_token_endpoint(app: App) -> None:
    creds = app.new_client()
    response = app.post("/token/", {"grant_type": "client_credentials"}, creds=creds)
    assert response.status_code in (307, 404)
    assert "access_token" not in response.text


# -- RFC 6749 §3.3: scope = scope-token *( SP scope-token ), on every grant ---------------------

STRAY_SPACES = ["photos:read  photos:write", " photos:read", "photos:read ", " ", "photos:read\n"]


@pytest.mark.parametrize("scope", STRAY_SPACES)
def test_a_scope_with_stray_spaces_is_invalid_scope_on_every_grant(app: App, scope: str) -> None:
    creds = app.new_client()
    app.new_user("alice")
    refresh_token = app.login(creds, "alice")["refresh_token"]
    for form in (
        {"grant_type": "client_credentials"},
        {"grant_type": "password", "username": "alice", "password": PASSWORD},
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
    ):
        _error(app.token(creds, **form, scope=scope), 400, "invalid_scope")
    # The refused refresh left the refresh token unused; one space between tokens is fine.
    response = app.refresh(creds, refresh_token, scope="photos:read photos:write")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "photos:read photos:write"


def test_a_malformed_scope_is_refused_before_the_password_is_checked(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    response = app.token(
        creds, grant_type="password", username="alice", password="wrong", scope="a  b"
    )
    _error(response, 400, "invalid_scope")
    assert "user_auth_failed" not in app.audit_events()  # no password check, no failure counted


# -- a client that hangs up mid-request ------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_client_hanging_up_is_not_an_error(
    app: App, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """ClientDisconnect (the body cut short, then the socket closed): a debug line, nothing
    sent, no 500 and no traceback. The same over a real socket: tests/e2e/test_issuer_hostile.py."""
    sent: list[object] = []
    messages = [
        {"type": "http.request", "body": b"grant_type=", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: object) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"issuer.test"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(app.http.app_state),  # as a server passes the lifespan state
    }
    caplog.set_level("DEBUG", logger="keyhouse.issuer")
    # On the test client's event loop, where the app's lifespan runs.
    app.http.portal.call(app.http.app, scope, receive, send)
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text
    assert f"client disconnected during POST {path}" in caplog.text


# -- control characters: refused before they reach the database ---------------------------------


def test_control_characters_are_invalid_request_never_a_500(app: App) -> None:
    """A NUL reaching PostgreSQL in a text parameter raised (a 500 on the postgres backend)."""
    creds = app.new_client()
    for path, form in [
        ("/token", {"grant_type": "password", "username": "al\x00ice", "password": "x"}),
        ("/token", {"grant_type": "password", "username": "alice", "password": "a\nb"}),
        ("/token", {"grant_type": "refresh_token", "refresh_token": "ab\x00c"}),
        ("/token", {"grant_type": "client_credentials", "audience": "ph\x00tos"}),
        ("/token", {"grant_type": "client_credentials", "x\x00": "1"}),
        ("/revoke", {"token": "ab\x00c"}),
        ("/introspect", {"token": "ab\x7fc"}),
    ]:
        _error(app.post(path, form, creds=creds), 400, "invalid_request")
    # Tab is allowed where RFC 6749 Appendix A allows it (in a password: the wrong one here).
    tab = app.token(creds, grant_type="password", username="nobody", password="a\tb")
    _error(tab, 400, "invalid_grant")


def test_control_characters_in_credentials_and_scope_keep_their_own_errors(app: App) -> None:
    creds = app.new_client()
    post_auth = {"grant_type": "client_credentials", "client_id": "c-\x00", "client_secret": "x"}
    _error(app.post("/token", post_auth), 401, "invalid_client")
    assert "client_auth_failed" in app.audit_events()  # a failed authentication like any other
    _error(
        app.token(creds, grant_type="client_credentials", scope="photos:read\x00"),
        400,
        "invalid_scope",
    )
