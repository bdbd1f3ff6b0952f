"""Sign-in for people against a real issuer process (uvicorn, a SQLite file): ``GET /authorize``,
the login page, the consent page. One negative test per rule; the browser's part (cookies kept
and sent back, forms read from the HTML) is tests/e2e/signin_browser.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from tests.e2e.signin_browser import (
    CSRF,
    SESSION,
    Browser,
    hidden,
    pkce_pair,
    redirect_params,
)
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the tests read the Location
OTHER_REDIRECT = "https://app.example/cb?tenant=1"
MAX_FAILURES = 3


@dataclass
class SignIn:
    stack: Stack
    first_party: dict[str, Any]  # skips consent
    third_party: dict[str, Any]  # asks for consent

    def browser(self) -> Browser:
        http = web.Client(base_url=self.stack.issuer_url, timeout=15, follow_redirects=False)
        return Browser(http, origin=self.stack.issuer_url)

    def audit(self) -> list[dict[str, Any]]:
        return list(json.loads(self.stack.cli("audit", "--json", "--limit", "500").stdout))


def _client(stack: Stack, *redirects: str, first_party: bool) -> dict[str, Any]:
    args = [
        "clients",
        "create",
        "--name",
        "First-party app" if first_party else "Third-party <app>",
        "--scope",
        "openid profile photos:read photos:write",
        "--audience",
        "photos",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--json",
    ]
    for uri in redirects:
        args += ["--redirect-uri", uri]
    if first_party:
        args.append("--first-party")
    return dict(json.loads(stack.cli(*args).stdout))


@pytest.fixture(scope="module")
def signin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignIn]:
    stack = Stack(tmp_path_factory.mktemp("signin"))
    try:
        stack.issuer(ISSUER_LOGIN_MAX_FAILURES=str(MAX_FAILURES)).start()
        first = _client(stack, REDIRECT, OTHER_REDIRECT, first_party=True)
        third = _client(stack, REDIRECT, first_party=False)
        for name in ("alice", "bob", "carol", "dave", "erin"):
            stack.create_user(name, PASSWORD, "photos:read")
        yield SignIn(stack, first, third)
    finally:
        stack.stop_all()


def _params(client: dict[str, Any], **extra: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "state-123",
        "scope": "openid photos:read",
        "audience": "photos",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != "<omit>"}


def _signed_in(signin: SignIn, user: str = "alice") -> Browser:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    assert redirect_params(browser.login(page, user, PASSWORD))["code"]
    assert SESSION in browser.cookies
    return browser


def _without_ticket(html: str) -> str:
    return html.replace(hidden(html, "ticket"), "TICKET")


def _assert_error_page(response: httpx.Response, text: str) -> None:
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert text in response.text


# -- errors before the client and redirect URI are known good: a page, never a redirect --------


def test_unknown_client_is_an_error_page(signin: SignIn) -> None:
    response = signin.browser().get("/authorize", _params({"client_id": "nobody"}))
    _assert_error_page(response, "unknown client_id")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        REDIRECT + "/",
        REDIRECT + "?next=https://evil.example",
        "http://127.0.0.1:9/callback#x",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page(signin: SignIn, redirect_uri: str) -> None:
    response = signin.browser().get(
        "/authorize", _params(signin.first_party, redirect_uri=redirect_uri)
    )
    _assert_error_page(response, "redirect_uri is not registered")
    assert "evil.example" not in response.text


def test_missing_redirect_uri_is_an_error_page(signin: SignIn) -> None:
    response = signin.browser().get(
        "/authorize", _params(signin.first_party, redirect_uri="<omit>")
    )
    _assert_error_page(response, "redirect_uri is missing")


def test_error_page_escapes_what_it_shows(signin: SignIn) -> None:
    response = signin.browser().get("/authorize", "client_id=%3Cscript%3E&redirect_uri=x")
    _assert_error_page(response, "unknown client_id")
    assert "<script" not in response.text


# -- later errors: back to the client with error, state and iss (RFC 9207) ---------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": "<omit>"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "<omit>"}, "invalid_request"),
        ({"scope": "openid photos:read admin"}, "invalid_scope"),
        ({"audience": "contacts"}, "invalid_target"),
    ],
)
def test_request_errors_are_redirected_with_state_and_iss(
    signin: SignIn, extra: dict[str, str], error: str
) -> None:
    response = signin.browser().get("/authorize", _params(signin.first_party, **extra))
    assert response.headers["location"].startswith(REDIRECT + "?")
    params = redirect_params(response)
    assert params["error"] == error
    assert params["state"] == "state-123"
    assert params["iss"] == signin.stack.issuer_url
    assert "code" not in params
    assert response.headers["referrer-policy"] == "no-referrer"


def test_registered_query_is_kept_in_the_redirect(signin: SignIn) -> None:
    response = signin.browser().get(
        "/authorize",
        _params(signin.first_party, redirect_uri=OTHER_REDIRECT, response_type="token"),
    )
    assert response.headers["location"].startswith(OTHER_REDIRECT + "&error=")


# -- the session: prompt=none, prompt=login, max_age, a live session ---------------------------


def test_prompt_none_without_a_session_is_login_required(signin: SignIn) -> None:
    response = signin.browser().get("/authorize", _params(signin.first_party, prompt="none"))
    params = redirect_params(response)
    assert params["error"] == "login_required"
    assert params["state"] == "state-123"
    assert params["iss"] == signin.stack.issuer_url


def test_a_live_session_skips_the_login_page(signin: SignIn) -> None:
    browser = _signed_in(signin)
    for extra in ({}, {"prompt": "none"}, {"max_age": "3600"}):
        params = redirect_params(browser.get("/authorize", _params(signin.first_party, **extra)))
        assert params["code"]
        assert params["state"] == "state-123"
        assert params["iss"] == signin.stack.issuer_url


def test_prompt_login_and_max_age_zero_force_the_form(signin: SignIn) -> None:
    browser = _signed_in(signin)
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        page = browser.get("/authorize", _params(signin.first_party, **extra))
        assert page.status_code == 200
        assert 'name="password"' in page.text


def test_a_code_from_the_login_page_is_redeemed_at_the_token_endpoint(signin: SignIn) -> None:
    browser = signin.browser()
    verifier, challenge = pkce_pair()
    page = browser.get(
        "/authorize", _params(signin.first_party, code_challenge=challenge, nonce="n-1")
    )
    code = redirect_params(browser.login(page, "alice", PASSWORD))["code"]
    client = signin.first_party
    response = web.post(
        signin.stack.issuer_url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "openid photos:read"
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "photos"
    assert claims["sub"].startswith("user:")
    assert claims["sid"]


# -- the login form ------------------------------------------------------------------------------


def test_login_page_carries_the_security_headers_and_cookies(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    assert page.status_code == 200
    headers = page.headers
    assert headers["content-security-policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "form-action 'self' http://127.0.0.1:9; frame-ancestors 'none'; base-uri 'none'"
    )
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert "First-party app" in page.text
    cookies = browser.new_cookies(0)
    assert set(cookies) == {CSRF}
    assert cookies[CSRF].attributes == ("HttpOnly", "Secure", "SameSite=Lax", "Path=/")
    response = browser.login(page, "alice", PASSWORD)
    session = browser.new_cookies(1)[SESSION]
    assert session.attributes == (
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=28800",
    )
    assert len(session.value) >= 43  # 256 random bits
    assert response.headers["location"].startswith(REDIRECT + "?code=")
    css = browser.get("/static/keyhouse.css")
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"


def test_login_hint_fills_in_the_username_as_text(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party, login_hint="alice"))
    assert 'name="username" type="text" value="alice"' in page.text
    hostile = browser.get("/authorize", _params(signin.first_party, login_hint='"><script>x'))
    assert "<script>x" not in hostile.text
    assert 'value="&#34;&gt;&lt;script&gt;x"' in hostile.text


def test_wrong_password_is_a_generic_401_and_no_session(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    wrong = browser.login(page, "bob", "not the password")
    unknown = browser.login(page, "nobody-here", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "The username or password is incorrect." in response.text
        assert 'name="password"' in response.text  # the form again, to try once more
    # The same page whatever was wrong (the ticket aside, sealed anew each time).
    assert _without_ticket(wrong.text).replace("bob", "X") == _without_ticket(unknown.text).replace(
        "nobody-here", "X"
    )
    assert SESSION not in browser.cookies
    assert all(c.name != SESSION for c in browser.set_cookies)
    events = [e for e in signin.audit() if e["event"] == "user_auth_failed"]
    assert any("wrong password on the login page" in e["detail"] for e in events)
    assert any("unknown username on the login page" in e["detail"] for e in events)


def test_empty_fields_show_the_form_again(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    response = browser.login(page, "alice", "")
    assert response.status_code == 400
    assert "Enter your username and password." in response.text
    assert SESSION not in browser.cookies


def test_too_many_failures_are_throttled_even_with_the_right_password(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    for _ in range(MAX_FAILURES):
        assert browser.login(page, "carol", "wrong password").status_code == 401
    blocked = browser.login(page, "carol", PASSWORD)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed sign-in attempts" in blocked.text
    assert SESSION not in browser.cookies
    assert any(e["event"] == "auth_throttled" for e in signin.audit())


def test_a_successful_login_is_audited(signin: SignIn) -> None:
    _signed_in(signin, "erin")
    logins = [e for e in signin.audit() if e["event"] == "user_login"]
    assert any(e["client_id"] == signin.first_party["client_id"] for e in logins)


@pytest.mark.parametrize(
    ("change", "origin"),
    [
        ({"csrf_token": ""}, ""),  # no token
        ({"csrf_token": "A" * 43}, ""),  # a wrong token
        ({}, "https://evil.example"),  # a foreign origin
        ({}, "null"),  # an opaque origin without Sec-Fetch-Site (not a browser's own form)
        ({}, None),  # neither Origin nor Referer
    ],
)
def test_login_csrf(signin: SignIn, change: dict[str, str], origin: str | None) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    before = len([e for e in signin.audit() if e["event"] in ("user_login", "user_auth_failed")])
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "username": "dave",
        "password": PASSWORD,
        **change,
    }
    response = browser.post("/login", form, origin=origin)
    assert response.status_code == 403
    assert "This form was not sent from this sign-in page" in response.text
    assert "location" not in response.headers
    assert SESSION not in browser.cookies
    after = len([e for e in signin.audit() if e["event"] in ("user_login", "user_auth_failed")])
    assert after == before  # nothing happened: no login, no failure counted


@pytest.mark.parametrize("site", ["cross-site", "same-site", "none"])
def test_an_opaque_origin_from_elsewhere_is_refused(signin: SignIn, site: str) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "username": "dave",
        "password": PASSWORD,
    }
    response = browser.post("/login", form, origin="null", headers={"Sec-Fetch-Site": site})
    assert response.status_code == 403
    assert SESSION not in browser.cookies


def test_the_pages_own_form_from_a_no_referrer_page_is_accepted(signin: SignIn) -> None:
    # What Chromium sends for the login page's form: Origin null (the page is no-referrer)
    # and Sec-Fetch-Site same-origin.
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "username": "dave",
        "password": PASSWORD,
    }
    response = browser.post(
        "/login", form, origin="null", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert redirect_params(response)["code"]


def test_login_csrf_token_of_another_browser_is_refused(signin: SignIn) -> None:
    victim, attacker = signin.browser(), signin.browser()
    attacker_page = attacker.get("/authorize", _params(signin.first_party))
    victim.get("/authorize", _params(signin.first_party))  # the victim has a CSRF cookie
    response = victim.login(attacker_page, "dave", PASSWORD)  # the attacker's form and token
    assert response.status_code == 403
    assert SESSION not in victim.cookies


def test_referer_stands_in_for_a_missing_origin(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "username": "dave",
        "password": PASSWORD,
    }
    refused = browser.post(
        "/login", form, origin=None, headers={"Referer": "https://evil.example/authorize"}
    )
    assert refused.status_code == 403
    accepted = browser.post(
        "/login", form, origin=None, headers={"Referer": signin.stack.issuer_url + "/authorize"}
    )
    assert redirect_params(accepted)["code"]


def test_a_session_id_presented_before_login_is_not_reused(signin: SignIn) -> None:
    # A planted value (never a session) and a real earlier session (another user's): both are
    # replaced by a fresh id at login, and the earlier session ends.
    earlier = _signed_in(signin, "alice").cookies[SESSION]
    for planted in ("planted-by-an-attacker-0123456789abcdef0123456789", earlier):
        browser = signin.browser()
        browser.cookies[SESSION] = planted
        page = browser.get("/authorize", _params(signin.first_party, prompt="login"))
        assert redirect_params(browser.login(page, "dave", PASSWORD))["code"]
        assert browser.cookies[SESSION] != planted
    old = signin.browser()
    old.cookies[SESSION] = earlier
    params = redirect_params(old.get("/authorize", _params(signin.first_party, prompt="none")))
    assert params["error"] == "login_required"


def test_tampered_or_foreign_tickets_are_refused(signin: SignIn) -> None:
    browser = signin.browser()
    page = browser.get("/authorize", _params(signin.first_party))
    ticket = hidden(page.text, "ticket")
    version, payload, mac = ticket.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (f"{version}.{flipped}.{mac}", ticket[:-3], "v1.e30.AAAA", ""):
        response = browser.login(page, "alice", PASSWORD, ticket=bad)
        assert response.status_code == 400
        assert "has expired or was altered" in response.text
        assert "location" not in response.headers
    # A login ticket is not a consent ticket.
    response = browser.post(
        "/consent",
        {"ticket": ticket, "csrf_token": hidden(page.text, "csrf_token"), "decision": "approve"},
    )
    assert response.status_code == 400
    assert SESSION not in browser.cookies


def test_a_post_that_is_not_a_form_is_an_error_page(signin: SignIn) -> None:
    browser = signin.browser()
    response = browser.post("/login", {}, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    in_query = browser.http.post(
        "/login?password=x", data={"a": "b"}, headers={"Origin": signin.stack.issuer_url}
    )
    assert in_query.status_code == 400
    assert "credentials must not be sent in the query string" in in_query.text


# -- consent -------------------------------------------------------------------------------------


def test_consent_deny_is_access_denied(signin: SignIn) -> None:
    browser = _signed_in(signin, "bob")
    page = browser.get("/authorize", _params(signin.third_party))
    assert page.status_code == 200
    assert "Allow access?" in page.text
    assert "Third-party &lt;app&gt;" in page.text
    assert "<code>photos:read</code>" in page.text
    assert "<code>openid</code>" in page.text
    assert "<code>photos</code>" in page.text  # the audience
    assert "form-action 'self' http://127.0.0.1:9;" in page.headers["content-security-policy"]
    params = redirect_params(browser.consent(page, "deny"))
    assert params["error"] == "access_denied"
    assert params["state"] == "state-123"
    assert params["iss"] == signin.stack.issuer_url
    # Denied is not remembered: the next request asks again.
    assert "Allow access?" in browser.get("/authorize", _params(signin.third_party)).text


def test_consent_approve_is_remembered(signin: SignIn) -> None:
    browser = _signed_in(signin, "dave")
    none = browser.get("/authorize", _params(signin.third_party, prompt="none"))
    assert redirect_params(none)["error"] == "consent_required"
    page = browser.get("/authorize", _params(signin.third_party))
    params = redirect_params(browser.consent(page, "approve"))
    assert params["code"]
    assert params["iss"] == signin.stack.issuer_url
    # Remembered: the same request (or a narrower one) goes straight to a code.
    for extra in ({}, {"scope": "photos:read"}, {"prompt": "none"}):
        again = browser.get("/authorize", _params(signin.third_party, **extra))
        assert redirect_params(again)["code"]
    # prompt=consent asks again; a scope not yet approved asks again.
    assert (
        "Allow access?"
        in browser.get("/authorize", _params(signin.third_party, prompt="consent")).text
    )
    assert (
        "Allow access?"
        in browser.get(
            "/authorize", _params(signin.third_party, scope="openid profile photos:read")
        ).text
    )


def test_consent_needs_a_decision_and_the_same_session(signin: SignIn) -> None:
    browser = _signed_in(signin, "erin")
    page = browser.get("/authorize", _params(signin.third_party))
    assert browser.consent(page, "maybe").status_code == 400
    # Another browser (no session, or another user's) cannot answer this page.
    other = _signed_in(signin, "alice")
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "decision": "approve",
    }
    other.get("/authorize", _params(signin.first_party))  # sets other's CSRF cookie
    assert other.post("/consent", form).status_code == 403  # erin's CSRF token
    other.cookies[CSRF] = browser.cookies[CSRF]
    response = other.post("/consent", form)
    assert response.status_code == 200  # the login page: alice is not erin's session
    assert 'name="password"' in response.text


def test_consent_csrf(signin: SignIn) -> None:
    browser = _signed_in(signin, "alice")
    page = browser.get("/authorize", _params(signin.third_party, scope="profile"))
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "decision": "approve",
    }
    assert browser.post("/consent", form, origin="https://evil.example").status_code == 403
    assert browser.post("/consent", {**form, "csrf_token": "x"}).status_code == 403
    # Nothing was approved.
    again = browser.get("/authorize", _params(signin.third_party, scope="profile", prompt="none"))
    assert redirect_params(again)["error"] == "consent_required"
