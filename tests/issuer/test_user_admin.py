"""issuer/user_admin.py through ``POST /admin/users/{username}/disable`` and ``/enable`` (the CLI
runs the same code: tests/issuer/test_cli.py): refresh tokens revoked, sign-in sessions ended,
the account-disabled event recorded, the JSON answer; unknown user 404; admin scope needed."""

from __future__ import annotations

from shared import security_events as se
from tests.issuer.conftest import App


def _admin_headers(app: App) -> dict[str, str]:
    admin = app.new_client(
        scope="issuer:admin", audiences=("issuer",), grants=("client_credentials",)
    )
    token = app.token(admin, grant_type="client_credentials", audience="issuer").json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_disable_and_enable_a_user(app: App) -> None:
    headers = _admin_headers(app)
    creds = app.new_client()
    user_id = app.new_user("alice")
    tokens = app.login(creds, "alice")
    app.issuer.sessions.create(user_id, app.clock())
    response = app.http.post("/admin/users/alice/disable", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "username": "alice",
        "disabled": True,
        "refresh_tokens_revoked": 1,
        "sessions_ended": 1,
    }
    assert app.refresh(creds, tokens["refresh_token"]).status_code == 400
    (event,) = app.issuer.events.store.after(0)
    rule = se.rule_from_claims(event.claims)
    assert (rule.claim, rule.value) == ("sub", se.subject_hash(f"user:{user_id}"))
    assert rule.before == int(app.clock())
    assert "user_disabled" in app.audit_events()
    enabled = app.http.post("/admin/users/alice/enable", headers=headers)
    assert enabled.status_code == 200
    assert enabled.json() == {
        "username": "alice",
        "disabled": False,
        "refresh_tokens_revoked": 0,
        "sessions_ended": 0,
    }
    assert len(app.issuer.events.store.after(0)) == 1  # enabling tells nobody
    assert app.login(creds, "alice")["access_token"]


def test_unknown_user_is_404(app: App) -> None:
    response = app.http.post("/admin/users/nobody/disable", headers=_admin_headers(app))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert app.issuer.events.store.after(0) == []


def test_needs_an_admin_token(app: App) -> None:
    app.new_user("alice")
    response = app.http.post("/admin/users/alice/disable")
    assert response.status_code == 401
    creds = app.new_client()
    token = app.token(creds, grant_type="client_credentials").json()["access_token"]
    refused = app.http.post(
        "/admin/users/alice/disable", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    assert app.issuer.tokens.accounts.get_user("alice").disabled is False  # type: ignore[union-attr]


def test_a_password_change_revokes_and_records_credential_change(app: App) -> None:
    creds = app.new_client()
    user_id = app.new_user("alice")
    tokens = app.login(creds, "alice")
    change = app.issuer.users.set_password("alice", "a-new-password-1", by="the CLI")
    assert (change.refresh_tokens_revoked, change.user.disabled) == (1, False)
    assert app.refresh(creds, tokens["refresh_token"]).status_code == 400
    (event,) = app.issuer.events.store.after(0)
    assert list(event.claims["events"]) == [se.CREDENTIAL_CHANGE]
    assert se.rule_from_claims(event.claims).value == se.subject_hash(f"user:{user_id}")
    assert "user_password_changed" in app.audit_events()
