"""issuer/authorization.py: the authorization request checked against its client (pure)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from issuer.accounts import Client
from issuer.authorization import (
    AuthorizationRequest,
    Query,
    check_request,
    check_target,
    error_redirect,
    granted_scopes,
    parse_query,
    redirect_url,
    target_of,
)
from shared.errors import InvalidRequest, KeyhouseError

REDIRECT = "https://app.example/callback"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 Appendix B

CLIENT = Client(
    client_id="app",
    name="App",
    secret_hash="x",
    scopes=frozenset({"openid", "profile", "photos:read", "photos:write"}),
    audiences=("photos", "contacts"),
    grant_types=frozenset({"authorization_code", "refresh_token"}),
    disabled=False,
    redirect_uris=(REDIRECT, "http://127.0.0.1:8003/cb?x=1"),
)


def _query(**params: str) -> Query:
    base = {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "st",
        "audience": "photos",
    }
    base.update(params)
    return parse_query(urlencode({k: v for k, v in base.items() if v != "<omit>"}))


def _check(**params: str) -> AuthorizationRequest:
    query = _query(**params)
    _client_id, redirect_uri = target_of(query)
    return check_request(query, check_target(CLIENT, redirect_uri), redirect_uri)


def test_a_good_request() -> None:
    request = _check(scope="openid photos:read", nonce="n-1", prompt="login", max_age="60")
    assert request == AuthorizationRequest(
        client_id="app",
        redirect_uri=REDIRECT,
        state="st",
        scopes=frozenset({"openid", "photos:read"}),
        audience="photos",
        code_challenge=CHALLENGE,
        nonce="n-1",
        prompt=frozenset({"login"}),
        max_age=60,
    )
    assert request.forces_login
    assert not request.no_prompt
    assert AuthorizationRequest.from_dict(request.to_dict()) == request


def test_scope_omitted_is_the_clients_scopes_and_resource_selects_the_audience() -> None:
    request = _check(audience="<omit>", resource="contacts")
    assert request.scopes == CLIENT.scopes
    assert request.audience == "contacts"


def test_blank_parameters_are_omitted_and_repeats_are_noted() -> None:
    query = parse_query("a=&b=1&b=2&c=3")
    assert query.params == {"b": "2", "c": "3"}
    assert query.repeated == {"b"}


# -- step 1: errors shown on the page (InvalidRequest), never redirected ----------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("redirect_uri=" + REDIRECT, "client_id is missing"),
        ("client_id=app", "redirect_uri is missing"),
        ("client_id=app&redirect_uri=", "redirect_uri is missing"),
        ("client_id=app&client_id=b&redirect_uri=x", "client_id is repeated"),
        (f"client_id=app&redirect_uri={REDIRECT}&redirect_uri=x", "redirect_uri is repeated"),
    ],
)
def test_target_errors(query: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        target_of(parse_query(query))


@pytest.mark.parametrize("query", ["client_id=%ff", "client_id=a%00b", "x" * 9000])
def test_unreadable_query_is_a_page_error(query: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_query(query)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        REDIRECT + "/",
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        "HTTPS://app.example/callback",
        "https://app.example/callback#frag",
        "http://127.0.0.1:8003/cb",  # registered with its query: exact match only
        "https://app.example/call",
    ],
)
def test_unregistered_redirect_uri_is_a_page_error(redirect_uri: str) -> None:
    with pytest.raises(InvalidRequest, match="not registered"):
        check_target(CLIENT, redirect_uri)


def test_unknown_or_disabled_client_is_a_page_error() -> None:
    with pytest.raises(InvalidRequest, match="unknown client_id"):
        check_target(None, REDIRECT)
    with pytest.raises(InvalidRequest, match="unknown client_id"):
        check_target(replace(CLIENT, disabled=True), REDIRECT)


# -- step 2: errors redirected to the client --------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"response_type": "<omit>"}, "invalid_request", "response_type is missing"),
        ({"response_type": "token"}, "unsupported_response_type", "only response_type=code"),
        ({"response_type": "code id_token"}, "unsupported_response_type", "code"),
        ({"code_challenge": "<omit>"}, "invalid_request", "code_challenge is required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "plain is not supported"),
        ({"code_challenge_method": "<omit>"}, "invalid_request", "must be S256"),
        ({"code_challenge": CHALLENGE[:-1]}, "invalid_request", "43 characters"),
        ({"code_challenge": CHALLENGE + "A"}, "invalid_request", "43 characters"),
        ({"scope": "photos:read admin"}, "invalid_scope", "admin"),
        ({"scope": "photos:read  openid"}, "invalid_scope", "exactly one space"),
        ({"audience": "billing"}, "invalid_target", "not allowed"),
        ({"audience": "<omit>"}, "invalid_request", "several audiences"),
        ({"audience": "photos", "resource": "contacts"}, "invalid_request", "different"),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode=query"),
        ({"prompt": "none login"}, "invalid_request", "prompt=none"),
        ({"prompt": "sometimes"}, "invalid_request", "prompt must be"),
        ({"max_age": "-1"}, "invalid_request", "max_age"),
        ({"max_age": "1e3"}, "invalid_request", "max_age"),
        ({"state": "s" * 1025}, "invalid_request", "state is longer"),
        ({"nonce": "n" * 513}, "invalid_request", "nonce is longer"),
        ({"request": "eyJ"}, "request_not_supported", "request objects"),
        ({"request_uri": "https://x"}, "request_uri_not_supported", "request_uri"),
    ],
)
def test_request_errors(params: dict[str, str], error: str, message: str) -> None:
    with pytest.raises(KeyhouseError, match=message) as caught:
        _check(**params)
    assert caught.value.error == error


def test_a_repeated_parameter_is_invalid_request_and_its_state_is_not_returned() -> None:
    query = parse_query(
        urlencode(
            [
                ("client_id", "app"),
                ("redirect_uri", REDIRECT),
                ("state", "a"),
                ("state", "b"),
            ]
        )
    )
    with pytest.raises(InvalidRequest, match="'state' is repeated"):
        check_request(query, CLIENT, REDIRECT)
    assert query.state() is None
    assert parse_query("state=" + "s" * 1025).state() is None
    assert parse_query("state=abc").state() == "abc"


def test_a_client_without_the_code_grant_is_unauthorized() -> None:
    client = replace(CLIENT, grant_types=frozenset({"client_credentials"}))
    with pytest.raises(KeyhouseError) as caught:
        check_request(_query(), client, REDIRECT)
    assert caught.value.error == "unauthorized_client"


def test_granted_scopes_are_the_users_plus_protocol_scopes() -> None:
    requested = frozenset({"openid", "profile", "photos:read", "photos:write"})
    assert granted_scopes(requested, frozenset({"photos:read", "contacts:read"})) == {
        "openid",
        "profile",
        "photos:read",
    }
    assert granted_scopes(frozenset({"photos:write"}), frozenset()) == frozenset()


def test_redirect_urls_keep_the_registered_query() -> None:
    url = redirect_url("http://127.0.0.1:8003/cb?x=1", {"code": "c&d", "state": None})
    assert url == "http://127.0.0.1:8003/cb?x=1&code=c%26d"
    error = error_redirect(REDIRECT, "https://issuer.example", InvalidRequest("bad thing"), "s t")
    parts = urlsplit(error)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT
    assert dict(parse_qsl(parts.query)) == {
        "error": "invalid_request",
        "error_description": "bad thing",
        "state": "s t",
        "iss": "https://issuer.example",
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"client_id": 1},
        {**AuthorizationRequest("a", "b", None, frozenset(), "c", "d").to_dict(), "max_age": True},
    ],
)
def test_from_dict_refuses_anything_else(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not an authorization request"):
        AuthorizationRequest.from_dict(data)
