"""The security audit log: what it records, ``issuer audit``, and that it never holds a secret."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from issuer import cli
from issuer.db import audit_events
from tests.issuer.conftest import PASSWORD, App, MakeApp, basic


@pytest.fixture
def cli_app(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> App:
    app = make_app(login_max_failures=3)
    monkeypatch.setenv("ISSUER_DATABASE_URL", app.settings.database_url)
    monkeypatch.setenv("ISSUER_SECRET_KEY", app.settings.secret_key or "")
    return app


def _audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert cli.main(["audit", "--json", *args]) == 0
    return list(json.loads(capsys.readouterr().out))


def test_security_events_are_recorded_and_never_hold_a_secret_or_token(
    cli_app: App, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = cli_app
    creds = app.new_client()
    user_id = app.new_user("alice")
    secrets_seen: list[str] = [creds.client_secret, PASSWORD]

    # Failed client authentication, known and unknown client, secret in the wrong place.
    wrong_secret = "WRONG-client-secret-1f2e3d"
    typed_as_id = "SECRET-typed-as-client-id-9a8b"
    secrets_seen += [wrong_secret, typed_as_id]
    app.post(
        "/token", {"grant_type": "client_credentials"}, headers=basic(creds.client_id, wrong_secret)
    )
    app.post(
        "/token", {"grant_type": "client_credentials"}, headers=basic(typed_as_id, wrong_secret)
    )
    # Failed logins up to throttling, including a password typed into the username field.
    wrong_password = "WRONG-password-hunter2"
    secrets_seen.append(wrong_password)
    for _ in range(3):
        app.token(creds, grant_type="password", username="alice", password=wrong_password)
    app.token(creds, grant_type="password", username="alice", password=PASSWORD)  # 429
    app.token(creds, grant_type="password", username=PASSWORD, password=PASSWORD)
    # Refresh-token reuse and revocation.
    app.advance(400)
    login = app.login(creds, "alice")
    rt1 = login["refresh_token"]
    rt2 = app.refresh(creds, rt1).json()["refresh_token"]
    app.refresh(creds, rt1)  # reuse
    rt3 = app.login(creds, "alice")["refresh_token"]
    app.post("/revoke", {"token": rt3}, creds=creds)
    secrets_seen += [rt1, rt2, rt3, login["access_token"]]
    # Key revocation through the CLI.
    capsys.readouterr()
    kid = json.loads(base64.urlsafe_b64decode(login["access_token"].split(".")[0] + "=="))["kid"]
    assert cli.main(["keys", "revoke", kid]) == 0

    events = _audit_json(capsys, "--limit", "1000")
    names = [e["event"] for e in events]
    for expected in (
        "client_auth_failed",
        "user_auth_failed",
        "auth_throttled",
        "refresh_token_reuse",
        "refresh_family_revoked",
        "key_revoked",
    ):
        assert expected in names, names
    reuse = next(e for e in events if e["event"] == "refresh_token_reuse")
    assert reuse["subject"] == f"user:{user_id}"
    assert reuse["client_id"] == creds.client_id
    assert reuse["address"] == "testclient"
    assert any(e["event"] == "key_revoked" and kid in str(e["detail"]) for e in events)
    # Newest first.
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)

    # Nothing secret anywhere: the CLI's output (JSON and text), the table, the logs.
    capsys.readouterr()
    assert cli.main(["audit", "--limit", "1000"]) == 0
    text = capsys.readouterr().out
    with app.issuer.tokens.accounts.engine.connect() as conn:
        table = json.dumps([dict(r) for r in conn.execute(audit_events.select()).mappings()])
    haystacks = {"json": json.dumps(events), "text": text, "table": table, "logs": caplog.text}
    for where, haystack in haystacks.items():
        for secret in secrets_seen:
            assert secret not in haystack, f"a secret or token leaked into the {where}"
    assert "key_revoked" in text
    assert "refresh_token_reuse" in text


def test_audit_limit_and_bad_input(cli_app: App, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(5):
        cli_app.post("/token", {"grant_type": "client_credentials"}, headers=basic("c-x", "y"))
    assert len(_audit_json(capsys, "--limit", "2")) == 2
    # Three failures, then the block (one event); blocked attempts are not recorded one by one.
    assert [e["event"] for e in _audit_json(capsys)] == ["auth_throttled"] + [
        "client_auth_failed"
    ] * 3
    assert cli.main(["audit", "--limit", "0"]) == 2
    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "--limit", "nope"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_unknown_event_names_are_refused(app: App) -> None:
    with pytest.raises(ValueError, match="unknown audit event"):
        app.issuer.tokens.audit.record("made_up")


def _columns(header: str) -> list[tuple[str, int]]:
    names = ["TIME (UTC)", "EVENT", "CLIENT", "SUBJECT", "ADDRESS", "DETAIL"]
    return [(name, header.index(name)) for name in names]


def test_audit_table_columns_line_up_for_every_subject(
    cli_app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app = cli_app
    creds = app.new_client()
    user_id = app.new_user("alice")
    app.token(creds, grant_type="password", username="alice", password="WRONG-password-1")
    app.post("/token", {"grant_type": "client_credentials"}, headers=basic(creds.client_id, "x"))
    kid = app.issuer.keyring.signer().kid
    assert cli.main(["keys", "revoke", kid]) == 0
    events = _audit_json(capsys)
    assert {e["subject"] for e in events} >= {f"user:{user_id}", None}  # 37 characters, and none

    capsys.readouterr()
    assert cli.main(["audit"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    columns = _columns(header)
    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        expected = [
            None,  # the time: checked by its width below
            event["event"],
            event["client_id"] or "-",
            event["subject"] or "-",
            event["address"] or "-",
            event["detail"],
        ]
        for (name, start), (_next_name, end), value in zip(
            columns, [*columns[1:], ("", len(row))], expected, strict=True
        ):
            cell = row[start:end]
            assert start == 0 or row[start - 1] == " ", (name, row)
            if value is not None:
                assert cell.rstrip() == value, (name, header, row)
            else:
                assert len(cell.rstrip()) == len("2026-01-01 00:00:00"), row


def test_admin_api_revoking_a_revoked_key_answers_200_already_revoked_and_audits_once(
    make_app: MakeApp,
) -> None:
    app = make_app()
    admin = app.new_client(
        scope="issuer:admin", audiences=("issuer",), grants=("client_credentials",)
    )
    kid = app.issuer.keyring.signer().kid
    rotated = app.issuer.admin.rotate(now=True)["kid"]  # the old key now only verifies
    app.issuer.keyring.reload()
    token = app.token(admin, grant_type="client_credentials", audience="issuer").json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    first = app.http.post(f"/admin/keys/{kid}/revoke", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["already_revoked"] is False
    again = app.http.post(f"/admin/keys/{kid}/revoke", headers=headers)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["already_revoked"] is True
    assert body["state"] == "revoked"
    assert body["revoked_at"] == first.json()["revoked_at"]
    assert body["signing_kid"] == rotated
    assert app.audit_events().count("key_revoked") == 1
