"""shared.errors.render_error, the one place an error becomes status, headers and body: each rule
of its docstring, with the case it must not apply to."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from shared.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    JWKSError,
    KeyhouseError,
    KeysUnavailable,
    MethodNotAllowed,
    MissingToken,
    NotFound,
    ServerError,
    SlowDown,
    error_for_status,
    render_error,
)


def _body(exc: KeyhouseError, **kwargs: Any) -> dict[str, str]:
    data: dict[str, str] = json.loads(render_error(exc, **kwargs).body)
    return data


# -- every answer: its status, a JSON body, no-store ---------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        InvalidRequest("x"),
        InvalidClient("x"),
        NotFound("x"),
        MethodNotAllowed("x"),
        KeysUnavailable("x"),
        ServerError("internal error"),
        ConfigurationError("x"),
    ],
)
def test_every_answer_is_json_and_never_stored(exc: KeyhouseError) -> None:
    status, headers, body = render_error(exc, bearer_realm="photos")
    assert status == exc.status_code
    assert headers["Cache-Control"] == "no-store"
    assert headers["Pragma"] == "no-cache"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]


def test_an_errors_own_headers_are_kept_beside_no_store() -> None:
    _, headers, _ = render_error(SlowDown("wait", headers={"Retry-After": "7"}))
    assert headers["Retry-After"] == "7"
    assert headers["Cache-Control"] == "no-store"
    _, plain, _ = render_error(InvalidRequest("x"))
    assert "Retry-After" not in plain


def test_the_body_is_error_and_description_and_a_blank_description_is_left_out() -> None:
    assert render_error(InvalidRequest("bad")).body == (
        b'{"error":"invalid_request","error_description":"bad"}'
    )
    assert _body(InvalidRequest()) == {"error": "invalid_request"}


def test_a_description_cannot_break_out_of_the_challenge() -> None:
    _, headers, body = render_error(InvalidToken('a"b\\c\r\nX: y'), bearer_realm="photos")
    challenge = headers["WWW-Authenticate"]
    assert 'error_description="a?b?c??X: y"' in challenge
    assert "\r" not in challenge
    assert "\n" not in challenge
    assert json.loads(body)["error_description"] == "a?b?c??X: y"


# -- challenges ------------------------------------------------------------------------------------


def test_failed_client_authentication_challenges_with_basic() -> None:
    _, headers, _ = render_error(InvalidClient("no"))
    assert headers["WWW-Authenticate"] == 'Basic realm="keyhouse"'
    _, headers, _ = render_error(InvalidToken("no"))  # not on a bearer-protected resource
    assert "WWW-Authenticate" not in headers


def test_no_token_is_a_bare_bearer_challenge() -> None:
    _, headers, body = render_error(MissingToken("no access token was sent"), bearer_realm="photos")
    assert headers["WWW-Authenticate"] == 'Bearer realm="photos"'  # no error, no description
    assert json.loads(body)["error"] == "invalid_request"
    _, headers, _ = render_error(MissingToken("no access token was sent"))
    assert "WWW-Authenticate" not in headers  # no realm: not a bearer-protected resource


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidToken("expired"), 401),
        (InvalidRequest("two carriers"), 400),
        (InsufficientScope("requires scope issuer:admin", scope="issuer:admin"), 403),
    ],
)
def test_a_bearer_refusal_names_its_error(exc: KeyhouseError, status: int) -> None:
    got, headers, _ = render_error(exc, bearer_realm="issuer")
    assert got == status
    assert headers["WWW-Authenticate"].startswith(
        f'Bearer realm="issuer", error="{exc.error}", error_description="{exc.description}"'
    )


def test_insufficient_scope_names_the_scope_and_nothing_else_does() -> None:
    exc = InsufficientScope("requires scope issuer:admin", scope="issuer:admin")
    _, headers, _ = render_error(exc, bearer_realm="issuer")
    assert headers["WWW-Authenticate"].endswith(', scope="issuer:admin"')
    _, headers, _ = render_error(InvalidToken("expired"), bearer_realm="issuer")
    assert "scope=" not in headers["WWW-Authenticate"]
    _, headers, _ = render_error(InsufficientScope("no scope named"), bearer_realm="issuer")
    assert "scope=" not in headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "exc",
    [
        NotFound("no such key"),
        MethodNotAllowed("use POST", headers={"Allow": "POST"}),
        KeysUnavailable("no keys yet"),
        SlowDown("wait"),
        ServerError("internal error"),
    ],
)
def test_other_errors_on_a_bearer_resource_carry_no_challenge(exc: KeyhouseError) -> None:
    _, headers, _ = render_error(exc, bearer_realm="photos")
    assert "WWW-Authenticate" not in headers


# -- server-side errors: a generic answer, the detail in the log -----------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConfigurationError("cannot decrypt signing key k1: wrong ISSUER_SECRET_KEY?"),
        JWKSError("issuer metadata names a different issuer"),
    ],
)
def test_a_server_side_error_shows_a_generic_description_and_logs_the_detail(
    exc: KeyhouseError, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("tests.errors")
    try:
        raise exc
    except KeyhouseError as raised:
        status, headers, body = render_error(raised, bearer_realm="photos", log=log)
    assert status == exc.status_code
    assert json.loads(body) == {"error": "server_error", "error_description": "internal error"}
    assert str(exc) not in json.dumps(headers)
    assert "WWW-Authenticate" not in headers
    (record,) = [r for r in caplog.records if r.name == "tests.errors"]
    assert record.levelno == logging.ERROR
    assert str(exc) in record.getMessage()
    assert record.exc_info is not None  # with its traceback
    assert "Traceback" in caplog.text


def test_a_client_error_is_shown_as_is_and_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.errors")
    body = _body(InvalidRequest("grant_type is required"), log=log)
    assert body["error_description"] == "grant_type is required"
    assert not [r for r in caplog.records if r.name == "tests.errors"]


# -- statuses the web framework chose --------------------------------------------------------------


def test_framework_statuses_map_to_errors() -> None:
    assert _body(error_for_status(404, "Not Found")) == {
        "error": "not_found",
        "error_description": "Not Found",
    }
    status, headers, body = render_error(
        error_for_status(405, "Method Not Allowed", {"Allow": "GET"})
    )
    assert (status, headers["Allow"], json.loads(body)["error"]) == (405, "GET", "invalid_request")
    other = error_for_status(415, "Unsupported Media Type")
    assert (other.status_code, other.error) == (415, "invalid_request")
    assert render_error(other).status == 415
    assert type(other).status_code == 500  # set on the instance, not on the class
