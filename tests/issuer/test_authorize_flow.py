"""Sign-in over HTTP in-process, on a fake clock: what only time shows (ticket expiry, the
session's idle and absolute lifetimes, max_age) and a disabled user's session."""

from __future__ import annotations

import pytest

from tests.e2e.signin_browser import SESSION, Browser, hidden, pkce_pair, redirect_params
from tests.issuer.conftest import ISSUER, PASSWORD, App, MakeApp
from tests.support.postgres import PostgresServer

REDIRECT = "https://app.example/callback"


@pytest.fixture
def signin_app(make_app: MakeApp) -> App:
    app = make_app(session_idle_ttl=60, session_ttl=150)
    app.issuer.tokens.accounts.create_client(
        name="App",
        scopes=frozenset({"openid", "photos:read"}),
        audiences=["photos"],
        grant_types=["authorization_code"],
        now=app.clock(),
        client_id="app",
        redirect_uris=[REDIRECT],
        first_party=True,
    )
    app.new_user("alice", "photos:read")
    return app


def _params(**extra: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
        **extra,
    }


def _browser(app: App) -> Browser:
    return Browser(app.http, origin=ISSUER)


def _signed_in(app: App) -> Browser:
    browser = _browser(app)
    page = browser.get("/authorize", _params())
    assert redirect_params(browser.login(page, "alice", PASSWORD))["code"]
    return browser


def _prompt_none(browser: Browser) -> dict[str, str]:
    return redirect_params(browser.get("/authorize", _params(prompt="none")))


def test_an_expired_ticket_is_refused(signin_app: App) -> None:
    browser = _browser(signin_app)
    page = browser.get("/authorize", _params())
    signin_app.advance(599)
    assert browser.login(page, "alice", "wrong password").status_code == 401  # still valid
    signin_app.advance(1)
    response = browser.login(page, "alice", PASSWORD)
    assert response.status_code == 400
    assert "has expired or was altered" in response.text
    assert SESSION not in browser.cookies


def test_a_session_ends_when_idle(signin_app: App) -> None:
    browser = _signed_in(signin_app)
    signin_app.advance(59)
    assert _prompt_none(browser)["code"]  # used: the idle clock starts again
    signin_app.advance(59)
    assert _prompt_none(browser)["code"]
    signin_app.advance(60)
    assert _prompt_none(browser)["error"] == "login_required"


def test_a_session_ends_at_its_absolute_lifetime_however_busy(signin_app: App) -> None:
    browser = _signed_in(signin_app)
    for _ in range(5):  # 5 x 29 = 145 s, never idle
        signin_app.advance(29)
        assert _prompt_none(browser)["code"]
    signin_app.advance(5)  # 150 s after the login
    assert _prompt_none(browser)["error"] == "login_required"


def test_max_age_asks_again_for_an_older_login(signin_app: App) -> None:
    browser = _signed_in(signin_app)
    signin_app.advance(40)
    assert redirect_params(browser.get("/authorize", _params(max_age="41")))["code"]
    page = browser.get("/authorize", _params(max_age="39"))
    assert page.status_code == 200
    assert hidden(page.text, "ticket")
    none = browser.get("/authorize", _params(max_age="39", prompt="none"))
    assert redirect_params(none)["error"] == "login_required"


def test_a_disabled_users_session_no_longer_signs_in(signin_app: App) -> None:
    browser = _signed_in(signin_app)
    signin_app.issuer.tokens.accounts.set_user_disabled("alice", True)
    assert _prompt_none(browser)["error"] == "login_required"
    page = browser.get("/authorize", _params())
    response = browser.login(page, "alice", PASSWORD)
    assert response.status_code == 401  # the generic failure, as for a wrong password


@pytest.mark.postgres
def test_a_database_outage_is_a_503_page(signin_app: App, request: pytest.FixtureRequest) -> None:
    """The database refuses this issuer's connections: the sign-in pages answer with the error
    page, 503 and Retry-After (never a JSON body or a 500); lifted, sign-in works again."""
    if not signin_app.settings.database_url.startswith("postgresql"):
        pytest.skip("ALLOW_CONNECTIONS is PostgreSQL's")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = signin_app.settings.database_url.rsplit("/", 1)[1]
    browser = _browser(signin_app)
    page = browser.get("/authorize", _params())
    server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        server._admin_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        for response in (
            browser.get("/authorize", _params()),
            browser.login(page, "alice", PASSWORD),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "Signing in is not possible right now." in response.text
        assert SESSION not in browser.cookies
    finally:
        server._admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert redirect_params(browser.login(page, "alice", PASSWORD))["code"]
