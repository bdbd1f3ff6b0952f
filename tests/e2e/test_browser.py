"""A person in a real browser (headless Chromium, Playwright): the web app of the demo, the
issuer's sign-in page, the cookies both leave, refresh, sign-out, and the refusals a browser
must see (a wrong password, a login form posted from another origin, an unregistered
redirect_uri).

The stack runs as ``./scripts/up`` runs it (issuer, photos, contacts, the web app: four
processes on loopback ports, the demo seeded by ``issuer.seed``), with access tokens living
``TTL`` seconds and resource services that allow no clock leeway, so an expired access token is
refused at once and the page can only keep working by refreshing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from shared.pkce import s256_challenge
from tests.support import web
from tests.support.browser import DemoStack, chromium, start_demo_stack

pytestmark = pytest.mark.e2e

TTL = 4  # seconds an access token lives
WEBAPP_COOKIE = "__Host-webapp-session"
ISSUER_SESSION = "__Host-keyhouse-session"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    stack = start_demo_stack(tmp_path_factory.mktemp("browser"), access_token_ttl=TTL)
    try:
        stack.add_item(stack.photos, "photos", "beach at dawn")
        stack.add_item(stack.contacts, "contacts", "Ada Lovelace")
        yield stack
    finally:
        stack.stack.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


def _to_login_page(page: Any, demo: DemoStack) -> None:
    page.goto(demo.webapp_url + "/")
    page.click("#sign-in")
    page.wait_for_selector("input[name=password]")
    assert page.url.startswith(demo.issuer_url + "/")


def _sign_in(page: Any, demo: DemoStack, password: str | None = None) -> None:
    _to_login_page(page, demo)
    page.fill("input[name=username]", demo.creds["username"])
    page.fill("input[name=password]", password or demo.creds["password"])
    page.click("button[type=submit]")


def _cookies(context: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in context.cookies()}


def _no_token_in_script_reach(page: Any) -> None:
    """What a script in the page can read: ``document.cookie`` (nothing, every cookie is
    HttpOnly), ``localStorage`` and ``sessionStorage`` (empty), the page itself (no JWT)."""
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("window.localStorage.length") == 0
    assert page.evaluate("window.sessionStorage.length") == 0
    assert not JWT.search(page.content())


def _wait_until_expired(demo: DemoStack) -> None:
    """Polls photos with a token issued after the web app's until photos refuses it: the web
    app's access tokens have expired by then too."""
    probe = demo.user_token("photos")
    deadline = time.monotonic() + TTL + 30
    while True:
        answer = web.get(
            demo.photos.url + "/photos", headers={"Authorization": f"Bearer {probe}"}, timeout=5
        )
        if answer.status_code == 401:
            return
        assert answer.status_code == 200, answer.text
        assert time.monotonic() < deadline, "the probe token never expired"
        time.sleep(0.2)


def test_sign_in_see_photos_refresh_and_sign_out(demo: DemoStack, context: Any) -> None:
    page = context.new_page()
    _sign_in(page, demo)
    page.wait_for_url(demo.webapp_url + "/")
    assert "beach at dawn" in page.inner_text("#photos")
    assert "Ada Lovelace" in page.inner_text("#contacts")  # a token for contacts, by refresh
    assert demo.creds["username"] in page.inner_text("#signed-in-as")

    # Every cookie, the issuer's and the web app's: HttpOnly, Secure, SameSite=Lax, no token.
    cookies = _cookies(context)
    assert {WEBAPP_COOKIE, ISSUER_SESSION} <= cookies.keys()
    for cookie in cookies.values():
        assert cookie["httpOnly"], cookie["name"]
        assert cookie["secure"], cookie["name"]
        assert cookie["sameSite"] == "Lax", cookie["name"]
        assert cookie["path"] == "/", cookie["name"]
        assert not JWT.search(cookie["value"]), cookie["name"]
    _no_token_in_script_reach(page)
    issuer_page = context.new_page()
    issuer_page.goto(demo.issuer_url + "/.well-known/openid-configuration")
    _no_token_in_script_reach(issuer_page)
    issuer_page.close()

    # Past the access tokens' lifetime the page still works: the web app refreshed them,
    # and a photo added through the page's form is there.
    _wait_until_expired(demo)
    page.reload()
    assert "beach at dawn" in page.inner_text("#photos")
    assert "Ada Lovelace" in page.inner_text("#contacts")
    assert page.locator("[role=alert]").count() == 0
    page.fill("#title-photos", "harbour at night")
    page.click("#photos button[type=submit]")
    page.wait_for_url(demo.webapp_url + "/")
    assert "harbour at night" in page.inner_text("#photos")
    assert page.locator("[role=alert]").count() == 0

    # Sign out: both sessions end, the page asks to sign in again, also after Back.
    page.click("#sign-out")
    page.wait_for_url(demo.webapp_url + "/signed-out")
    assert page.locator("#sign-in").count() == 1
    cookies = _cookies(context)
    assert WEBAPP_COOKIE not in cookies
    assert ISSUER_SESSION not in cookies
    page.go_back()
    page.wait_for_load_state()
    assert page.url == demo.webapp_url + "/"
    assert page.locator("#sign-in").count() == 1
    assert "beach at dawn" not in page.content()
    # The issuer's session is gone too: signing in asks for the password again.
    page.click("#sign-in")
    page.wait_for_selector("input[name=password]")
    assert page.url.startswith(demo.issuer_url + "/")


def test_a_wrong_password_shows_the_error_and_sets_no_session(
    demo: DemoStack, context: Any
) -> None:
    page = context.new_page()
    _sign_in(page, demo, password="not the password")
    page.wait_for_selector("#login-error")
    assert page.url.startswith(demo.issuer_url + "/")
    assert "password" in page.inner_text("#login-error").lower()
    assert ISSUER_SESSION not in _cookies(context)
    page.goto(demo.webapp_url + "/")
    assert page.locator("#sign-in").count() == 1


def test_a_login_form_posted_from_another_origin_is_refused(demo: DemoStack, context: Any) -> None:
    page = context.new_page()
    _to_login_page(page, demo)
    action = page.get_attribute("form", "action") or ""
    fields = {
        name: page.get_attribute(f"input[name={name}]", "value") or ""
        for name in ("ticket", "csrf_token")
    }
    login_url = action if action.startswith("http") else demo.issuer_url + action
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{value}">' for name, value in fields.items()
    )
    attacker = (
        f'<form method="post" action="{login_url}">{inputs}'
        f'<input name="username" value="{demo.creds["username"]}">'
        f'<input name="password" value="{demo.creds["password"]}">'
        '<button type="submit" id="go">go</button></form>'
    )
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=attacker),
    )
    page.goto("http://attacker.test/")
    with page.expect_navigation() as navigation:
        page.click("#go")
    response = navigation.value
    assert response is not None
    assert response.status == 403
    assert page.url.startswith(demo.issuer_url + "/")
    assert ISSUER_SESSION not in _cookies(context)


def test_an_unregistered_redirect_uri_shows_the_error_page_and_stays(
    demo: DemoStack, context: Any
) -> None:
    page = context.new_page()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": demo.creds["webapp_client_id"],
            "redirect_uri": "http://127.0.0.1:9/elsewhere",
            "scope": "openid",
            "state": "s",
            "code_challenge": s256_challenge("v" * 43),
            "code_challenge_method": "S256",
        }
    )
    url = f"{demo.issuer_url}/authorize?{query}"
    response = page.goto(url)
    assert response is not None
    assert response.status == 400
    assert page.url == url  # not redirected anywhere
    assert page.locator("[role=alert]").count() == 1
    assert page.locator("input[name=password]").count() == 0


def test_the_webapp_pages_carry_the_security_headers(demo: DemoStack, context: Any) -> None:
    page = context.new_page()
    response = page.goto(demo.webapp_url + "/")
    assert response is not None
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no script at all (default-src 'none')
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] in {"no-referrer", "same-origin"}
    # The stylesheet loads under that policy (no inline style to block).
    assert page.evaluate("document.styleSheets.length") == 1
