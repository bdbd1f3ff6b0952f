"""Failed-attempt throttling per client, per user and per address, kept in the database."""

from __future__ import annotations

import httpx

from issuer.db import auth_failures
from tests.issuer.conftest import PASSWORD, App, MakeApp, basic

LIMITS = {"login_max_failures": 3, "login_max_failures_per_address": 6, "login_failure_window": 300}


def _cc(app: App, client_id: str, secret: str) -> httpx.Response:
    return app.post(
        "/token", {"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )


def _assert_slow_down(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "slow_down"
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def test_client_failures_are_throttled_for_the_rest_of_the_window(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    creds = app.new_client()
    for _ in range(3):
        assert _cc(app, creds.client_id, "wrong").status_code == 401
        app.advance(10)
    # Blocked: the next failure is not even checked. Unblocked when the first failure ages out.
    _assert_slow_down(_cc(app, creds.client_id, "wrong"), 300 - 30)
    app.advance(100)
    _assert_slow_down(_cc(app, creds.client_id, "wrong"), 300 - 130)
    # The right secret (256 random bits, nothing to guess) still works: no lockout of the owner.
    assert app.token(creds, grant_type="client_credentials").status_code == 200
    assert app.audit_events().count("auth_throttled") == 1  # recorded once, not per request
    app.advance(170)  # t=300: the failure at t=0 ages out, those at 10 and 20 do not
    assert _cc(app, creds.client_id, "wrong").status_code == 401
    # A sliding window: that failure made three in the window again, until t=10 ages out.
    _assert_slow_down(_cc(app, creds.client_id, "wrong"), 10)


def test_unknown_client_ids_are_throttled_exactly_like_known_ones(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    creds = app.new_client()
    known = [_cc(app, creds.client_id, "wrong") for _ in range(4)]
    unknown = [_cc(app, "c-nobody", "wrong") for _ in range(4)]
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [401] * 3 + [429]
    assert known[-1].json() == unknown[-1].json()


def test_user_is_blocked_even_with_the_right_password(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    creds = app.new_client()
    app.new_user("alice")

    def login(password: str) -> httpx.Response:
        return app.token(creds, grant_type="password", username="alice", password=password)

    for _ in range(3):
        assert login("guess").status_code == 400
    _assert_slow_down(login(PASSWORD), 300)
    app.advance(299)
    _assert_slow_down(login(PASSWORD), 1)
    app.advance(1)
    assert login(PASSWORD).status_code == 200


def test_unknown_usernames_are_throttled_like_real_ones(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    creds = app.new_client()
    app.new_user("alice")

    def attempts(username: str) -> list[int]:
        return [
            app.token(creds, grant_type="password", username=username, password="x").status_code
            for _ in range(4)
        ]

    assert attempts("alice") == attempts("mallory") == [400, 400, 400, 429]


def test_address_is_throttled_across_usernames(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    creds = app.new_client()
    app.new_user("victim")
    for i in range(6):  # a spray: each username fails once, the address six times
        response = app.token(creds, grant_type="password", username=f"user{i}", password="x")
        assert response.status_code == 400
    sprayed = app.token(creds, grant_type="password", username="victim", password=PASSWORD)
    _assert_slow_down(sprayed, 300)


def test_address_is_throttled_across_client_ids(make_app: MakeApp) -> None:
    app = make_app(**LIMITS)
    for i in range(6):
        assert _cc(app, f"c-guess-{i}", "x").status_code == 401
    _assert_slow_down(_cc(app, "c-guess-new", "x"), 300)


def test_throttling_state_lives_in_the_database_and_holds_across_replicas(
    make_app: MakeApp,
) -> None:
    first = make_app(**LIMITS)
    second = make_app(clock=first.clock, **LIMITS)  # another app on the same database
    creds = first.new_client()
    first.new_user("alice")

    def login(app: App, password: str) -> httpx.Response:
        return app.token(creds, grant_type="password", username="alice", password=password)

    assert login(first, "a").status_code == 400
    assert login(second, "b").status_code == 400
    assert login(first, "c").status_code == 400
    _assert_slow_down(login(second, PASSWORD), 300)

    # Stored as hashes only: no username in clear.
    with first.issuer.tokens.accounts.engine.connect() as conn:
        rows = conn.execute(auth_failures.select()).mappings().all()
    assert rows
    assert all("alice" not in str(dict(r)) for r in rows)


def test_failure_throttle_settings_from_the_environment() -> None:
    from issuer.settings import IssuerSettings

    default = IssuerSettings.from_env({})
    assert (
        default.login_max_failures,
        default.login_max_failures_per_address,
        default.login_failure_window,
    ) == (10, 100, 300)
    custom = IssuerSettings.from_env(
        {
            "ISSUER_LOGIN_MAX_FAILURES": "5",
            "ISSUER_LOGIN_MAX_FAILURES_PER_ADDRESS": "50",
            "ISSUER_LOGIN_FAILURE_WINDOW": "60",
        }
    )
    assert (custom.login_max_failures, custom.login_max_failures_per_address) == (5, 50)
    assert custom.login_failure_window == 60
