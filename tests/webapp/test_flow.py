"""The web app's sign-in, pages and sign-out over plain HTTP against the real demo stack (issuer,
photos, contacts, web app: four processes): what the browser test cannot see or cannot forge.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support import web
from tests.support.browser import (
    COOKIE,
    Agent,
    DemoStack,
    hidden,
    location,
    sign_in,
    start_demo_stack,
    to_callback,
)

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    stack = start_demo_stack(tmp_path_factory.mktemp("webapp"), access_token_ttl=900)
    try:
        stack.add_item(stack.photos, "photos", "lighthouse")
        yield stack
    finally:
        stack.stack.stop_all()


def test_sign_in_gives_a_fresh_cookie_and_no_token(demo: DemoStack) -> None:
    agent = Agent()
    callback = to_callback(agent, demo)
    before = agent.jars[demo.webapp_url][COOKIE]
    answer = agent.get(callback)
    after = agent.jars[demo.webapp_url][COOKIE]
    assert after != before  # no session fixation
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE))
    for flag in ("HttpOnly", "Secure", "Path=/", "SameSite=lax"):
        assert flag.lower() in cookie.lower()
    assert "domain" not in cookie.lower()
    page = agent.get(demo.webapp_url + "/")
    assert "lighthouse" in page.text
    assert not JWT.search(page.text)
    assert not any(JWT.search(v) for v in page.headers.values())
    # The anonymous cookie that started the sign-in no longer opens anything.
    stale = web.get(demo.webapp_url + "/", headers={"Cookie": f"{COOKIE}={before}"})
    assert "lighthouse" not in stale.text
    assert 'id="sign-in"' in stale.text


def test_a_callback_is_honoured_once_and_only_in_the_browser_that_started_it(
    demo: DemoStack,
) -> None:
    agent = Agent()
    callback = to_callback(agent, demo)
    stranger = web.get(callback, timeout=10)  # no cookie: another browser
    assert stranger.status_code == 400
    assert "not started in this browser" in stranger.text
    other = Agent()
    other.get(demo.webapp_url + "/login")  # a session of its own, with its own pending state
    assert other.get(callback).status_code == 400
    assert agent.get(callback).status_code == 303  # the code was not spent by the refusals
    assert agent.get(callback).status_code == 400  # but now it is, and the state too


def test_a_callback_from_another_issuer_or_with_an_error_is_refused(demo: DemoStack) -> None:
    agent = Agent()
    callback = to_callback(agent, demo)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    forged = {**query, "iss": "http://127.0.0.1:1"}
    answer = agent.get(demo.webapp_url + "/callback?" + urlencode(forged))
    assert answer.status_code == 400
    assert "did not come from the issuer" in answer.text

    agent = Agent()
    callback = to_callback(agent, demo)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    denied = {"error": "access_denied", "state": query["state"], "iss": query["iss"]}
    answer = agent.get(demo.webapp_url + "/callback?" + urlencode(denied))
    assert answer.status_code == 403
    assert "did not allow" in answer.text
    repeated = agent.get(demo.webapp_url + "/callback?state=a&state=b")
    assert repeated.status_code == 400


def test_sign_out_needs_the_csrf_token_and_thisorigin_of(demo: DemoStack) -> None:
    agent = Agent()
    sign_in(agent, demo)
    page = agent.get(demo.webapp_url + "/")
    token = hidden(page.text, "csrf_token")
    url = demo.webapp_url + "/logout"
    own = {"Origin": demo.webapp_url}
    assert agent.request("POST", url, data={"csrf_token": "x" * 43}, headers=own).status_code == 403
    assert agent.request("POST", url, data={"csrf_token": ""}, headers=own).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert agent.request("POST", url, data={"csrf_token": token}, headers=evil).status_code == 403
    assert agent.request("POST", url, data={"csrf_token": token}).status_code == 403  # no Origin
    assert "lighthouse" in agent.get(demo.webapp_url + "/").text  # still signed in

    answer = agent.request("POST", url, data={"csrf_token": token}, headers=own)
    target = urlsplit(location(answer))
    assert f"{target.scheme}://{target.netloc}{target.path}" == demo.issuer_url + "/logout"
    query = parse_qs(target.query)
    assert query["post_logout_redirect_uri"] == [demo.webapp_url + "/signed-out"]
    assert query["client_id"] == [demo.creds["webapp_client_id"]]
    assert JWT.match(query["id_token_hint"][0])
    assert COOKIE not in agent.jars[demo.webapp_url]
    after = agent.get(demo.webapp_url + "/")
    assert 'id="sign-in"' in after.text


def test_adding_an_item_through_the_page(demo: DemoStack) -> None:
    agent = Agent()
    sign_in(agent, demo)
    token = hidden(agent.get(demo.webapp_url + "/").text, "csrf_token")
    own = {"Origin": demo.webapp_url}
    url = demo.webapp_url + "/items/contacts"
    form = {"csrf_token": token, "title": "Grace Hopper"}
    assert location(agent.request("POST", url, data=form, headers=own)) == "/"
    page = agent.get(demo.webapp_url + "/")
    assert "Grace Hopper" in page.text
    assert 'id="notice"' not in page.text
    # A blank title: the service refuses it, the page says so once.
    blank = {"csrf_token": token, "title": "   "}
    assert location(agent.request("POST", url, data=blank, headers=own)) == "/"
    assert "Not added: contacts refused the title" in agent.get(demo.webapp_url + "/").text
    assert 'id="notice"' not in agent.get(demo.webapp_url + "/").text
    # Refused: another origin, no CSRF token, an unknown service.
    evil = {"Origin": "http://evil.example"}
    assert agent.request("POST", url, data=form, headers=evil).status_code == 403
    bad = {"csrf_token": "x" * 43, "title": "Mallory"}
    assert agent.request("POST", url, data=bad, headers=own).status_code == 403
    other = demo.webapp_url + "/items/secrets"
    assert agent.request("POST", other, data=form, headers=own).status_code == 404
    assert "Mallory" not in agent.get(demo.webapp_url + "/").text


def test_a_sign_in_ended_at_the_issuer_ends_the_web_app_session(demo: DemoStack) -> None:
    """A user disabled at the issuer (their refresh-token families end with it): the web app's
    next refresh (the contacts token) is refused, its session ends, the page asks to sign in."""
    demo.stack.create_user("bob", "bob-password-123", "photos:read contacts:read")  # no write
    agent = Agent()
    sign_in(agent, demo, ("bob", "bob-password-123"))
    demo.stack.cli("users", "disable", "bob")
    page = agent.get(demo.webapp_url + "/")
    assert page.status_code == 200
    assert "Your sign-in has ended" in page.text
    assert 'id="sign-in"' in page.text
    assert COOKIE not in agent.jars[demo.webapp_url]


def test_pages_send_the_security_headers(demo: DemoStack) -> None:
    for path in ("/", "/signed-out", "/nowhere"):
        answer = web.get(demo.webapp_url + path, timeout=10)
        assert answer.status_code == (404 if path == "/nowhere" else 200)
        csp = answer.headers["content-security-policy"]
        assert csp.startswith("default-src 'none'; style-src 'self'")
        assert f"form-action 'self' {demo.issuer_url};" in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "same-origin"
    css = web.get(demo.webapp_url + "/static/webapp.css", timeout=10)
    assert css.headers["content-type"].startswith("text/css")


def test_health_and_readiness(demo: DemoStack) -> None:
    assert web.get(demo.webapp_url + "/readyz", timeout=10).json() == {"status": "ready"}
    health = web.get(demo.webapp_url + "/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert health["issuer"] == demo.issuer_url
