"""Refresh-token families (RFC 6749 §6, RFC 9700 §4.14): rotation, reuse, lifetimes, scope."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from issuer import cli
from issuer.db import refresh_tokens
from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError
from tests.issuer.conftest import PASSWORD, App, MakeApp


def test_every_use_rotates_and_reuse_revokes_the_whole_family(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    rt1 = app.login(creds, "alice")["refresh_token"]
    second = app.refresh(creds, rt1)
    assert second.status_code == 200
    rt2 = second.json()["refresh_token"]
    assert rt2 != rt1

    app.advance(app.settings.refresh_replay_grace + 1)  # past the replay grace
    replay = app.refresh(creds, rt1)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The replay ended the family: the legitimate successor is dead too.
    after = app.refresh(creds, rt2)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"
    assert app.audit_events().count("refresh_token_reuse") == 1

    # A separate login is a separate family and is untouched.
    other = app.login(creds, "alice")["refresh_token"]
    assert app.refresh(creds, other).status_code == 200


def test_a_replay_within_the_grace_answers_again_and_spends_the_undelivered_successor(
    make_app: MakeApp,
) -> None:
    """A refresh whose answer was lost (a replica killed after its commit, a client timeout)
    is sent again: within ISSUER_REFRESH_REPLAY_GRACE it is answered with a new successor."""
    app = make_app(refresh_replay_grace=10.0)
    creds = app.new_client()
    app.new_user("alice")
    rt1 = app.login(creds, "alice")["refresh_token"]
    lost = app.refresh(creds, rt1).json()["refresh_token"]  # committed, never delivered
    app.advance(3)
    again = app.refresh(creds, rt1)
    assert again.status_code == 200, again.text
    rt3 = again.json()["refresh_token"]
    assert rt3 not in (rt1, lost)
    assert app.introspect(creds, again.json()["access_token"])["active"] is True
    events = app.issuer.tokens.audit.recent(100)
    replays = [e for e in events if e.event == "refresh_replay_within_grace"]
    assert len(replays) == 1
    assert "refresh_token_reuse" not in app.audit_events()
    assert replays[0].client_id == creds.client_id
    family = app.issuer.tokens.refresh_tokens  # the detail names the family, never a token
    with family.engine.connect() as conn:
        family_id = conn.execute(select(refresh_tokens.c.family_id).limit(1)).scalar_one()
    assert family_id in replays[0].detail
    for token in (rt1, lost, rt3):
        assert token not in replays[0].detail
    # The new successor works; the spent one, presented later, ends the family.
    rt4 = app.refresh(creds, rt3).json()["refresh_token"]
    spent = app.refresh(creds, lost)
    assert spent.status_code == 400
    assert spent.json()["error"] == "invalid_grant"
    assert app.refresh(creds, rt4).status_code == 400
    assert app.audit_events().count("refresh_token_reuse") == 1


def test_with_the_grace_off_a_replay_is_reuse_at_once(make_app: MakeApp) -> None:
    app = make_app(refresh_replay_grace=0.0)
    creds = app.new_client()
    app.new_user("alice")
    rt1 = app.login(creds, "alice")["refresh_token"]
    rt2 = app.refresh(creds, rt1).json()["refresh_token"]
    assert app.refresh(creds, rt1).status_code == 400
    assert app.refresh(creds, rt2).status_code == 400
    assert "refresh_replay_within_grace" not in app.audit_events()


def test_replay_grace_setting_is_read_and_checked() -> None:
    assert IssuerSettings.from_env({}).refresh_replay_grace == 0.0  # off unless chosen
    for raw, value in (("0", 0.0), ("2.5", 2.5), ("60", 60.0)):
        env = {"ISSUER_REFRESH_REPLAY_GRACE": raw}
        assert IssuerSettings.from_env(env).refresh_replay_grace == value
    for raw in ("-1", "61", "ten", "nan", "inf", ""):
        with pytest.raises(ConfigurationError) as caught:
            IssuerSettings.from_env({"ISSUER_REFRESH_REPLAY_GRACE": raw})
        message = str(caught.value)
        assert message.startswith("ISSUER_REFRESH_REPLAY_GRACE must ")
        assert "\n" not in message


def test_idle_timeout_ends_an_unused_family(make_app: MakeApp) -> None:
    app = make_app(refresh_token_ttl=1000, refresh_token_idle_ttl=100)
    creds = app.new_client()
    app.new_user("alice")
    rt = app.login(creds, "alice")["refresh_token"]
    # Used within the idle timeout, the family lives past one idle period...
    for _ in range(3):
        app.advance(90)
        response = app.refresh(creds, rt)
        assert response.status_code == 200, response.text
        rt = response.json()["refresh_token"]
    assert app.introspect(creds, rt)["exp"] == int(app.clock()) + 100
    # ...but left unused for longer, it is gone.
    app.advance(101)
    expired = app.refresh(creds, rt)
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


def test_absolute_lifetime_caps_the_family_however_often_it_is_used(make_app: MakeApp) -> None:
    app = make_app(refresh_token_ttl=250, refresh_token_idle_ttl=100)
    creds = app.new_client()
    app.new_user("alice")
    start = int(app.clock())
    rt = app.login(creds, "alice")["refresh_token"]
    for _ in range(2):
        app.advance(90)
        response = app.refresh(creds, rt)
        assert response.status_code == 200
        rt = response.json()["refresh_token"]
    # Rotated at start+180: idle would allow start+280, the family ends at start+250.
    assert app.introspect(creds, rt)["exp"] == start + 250
    app.advance(71)  # start + 251
    response = app.refresh(creds, rt)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_idle_timeout_setting_is_read_from_the_environment() -> None:
    from issuer.settings import IssuerSettings

    assert IssuerSettings.from_env({}).refresh_token_idle_ttl == 1_209_600
    env = {"ISSUER_REFRESH_TOKEN_IDLE_TTL": "60"}
    assert IssuerSettings.from_env(env).refresh_token_idle_ttl == 60


def test_refresh_token_is_bound_to_its_client(app: App) -> None:
    owner = app.new_client()
    thief = app.new_client()
    app.new_user("alice")
    rt = app.login(owner, "alice")["refresh_token"]

    stolen = app.refresh(thief, rt)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert "refresh_token_wrong_client" in app.audit_events()
    # The owner's family is untouched (the other client never held it, so this is no replay).
    assert app.refresh(owner, rt).status_code == 200


def test_scope_may_narrow_but_never_widen(app: App) -> None:
    creds = app.new_client(scope="photos:read photos:write")
    app.new_user("alice", scope="photos:read photos:write")
    rt = app.login(creds, "alice")["refresh_token"]

    narrowed = app.refresh(creds, rt, scope="photos:read")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "photos:read"
    rt = narrowed.json()["refresh_token"]

    # Widening back to what the login had is refused...
    wider = app.refresh(creds, rt, scope="photos:read photos:write")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    # ...and the refused request did not consume the token.
    again = app.refresh(creds, rt)
    assert again.status_code == 200
    assert again.json()["scope"] == "photos:read"


def test_disabled_user_cannot_refresh(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    rt = app.login(creds, "alice")["refresh_token"]
    app.issuer.tokens.accounts.set_user_disabled("alice", True)
    response = app.refresh(creds, rt)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.fixture
def cli_env(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("ISSUER_DATABASE_URL", app.settings.database_url)
    monkeypatch.setenv("ISSUER_SECRET_KEY", app.settings.secret_key or "")
    return app


@pytest.mark.parametrize("command", ["disable", "set-password"])
def test_cli_disable_and_set_password_revoke_the_users_families(
    cli_env: App, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = cli_env
    creds = app.new_client()
    app.new_user("alice")
    app.new_user("bob")
    alice_rts = [app.login(creds, "alice")["refresh_token"] for _ in range(2)]
    bob_rt = app.login(creds, "bob")["refresh_token"]

    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new password\n"))
    argv = ["users", command, "alice"] + (["--password-stdin"] if command == "set-password" else [])
    assert cli.main(argv) == 0
    capsys.readouterr()

    for rt in alice_rts:
        response = app.refresh(creds, rt)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
    assert app.refresh(creds, bob_rt).status_code == 200  # other users are untouched
    expected = "user_disabled" if command == "disable" else "user_password_changed"
    assert expected in app.audit_events()

    old = app.token(creds, grant_type="password", username="alice", password=PASSWORD)
    assert old.status_code == 400
    if command == "set-password":
        new = app.token(
            creds, grant_type="password", username="alice", password="a brand new password"
        )
        assert new.status_code == 200


def test_cli_set_password_rejects_bad_input(
    cli_env: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.new_user("alice")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["users", "set-password", "alice", "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert cli.main(["users", "set-password", "nobody", "--password-stdin"]) == 2
    assert cli.main(["users", "set-password", "alice"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 3
