"""The sign-in additions to the ``issuer`` command, as a shell user meets them: ``clients create``
with redirect URIs, ``--public`` and ``--first-party``; ``users consents`` and
``users revoke-consent``; one-line errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from issuer.accounts import AccountStore
from issuer.consents import ConsentStore
from issuer.engines import make_engine
from issuer.sessions import SessionStore
from tests.issuer.test_cli import _init, _one_line_error, _run

CREATE = ["clients", "create", "--name", "web", "--audience", "photos", "--scope", "openid"]


def test_confidential_code_client(tmp_path: Path) -> None:
    _init(tmp_path)
    result = _run(
        tmp_path,
        *CREATE,
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://app.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:8003/cb",
        "--post-logout-redirect-uri",
        "http://127.0.0.1:8003/",
        "--first-party",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["client_secret"]) >= 43
    assert data["redirect_uris"] == ["https://app.example/cb", "http://127.0.0.1:8003/cb"]
    assert data["post_logout_redirect_uris"] == ["http://127.0.0.1:8003/"]
    assert data["grant_types"] == ["authorization_code", "refresh_token"]
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["first_party"] is True


def test_public_client_has_no_secret(tmp_path: Path) -> None:
    _init(tmp_path)
    args = [*CREATE, "--public", "--redirect-uri", "http://localhost:9/cb"]
    data = json.loads(_run(tmp_path, *args, "--json").stdout)
    assert "client_secret" not in data
    assert data["grant_types"] == ["authorization_code"]  # a public client's default
    assert data["token_endpoint_auth_method"] == "none"
    assert data["first_party"] is False
    text = _run(tmp_path, *args, "--client-id", "spa2")
    assert text.returncode == 0, text.stderr
    assert "client_secret" not in text.stdout
    assert "spa2" in text.stdout


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--grant", "authorization_code"], "at least one --redirect-uri"),
        (
            ["--grant", "authorization_code", "--redirect-uri", "http://app.example/cb"],
            "--redirect-uri 'http://app.example/cb' may use http:// only for",
        ),
        (
            ["--grant", "authorization_code", "--redirect-uri", "https://a.example/cb#x"],
            "fragment",
        ),
        (
            [
                "--grant",
                "authorization_code",
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "/bye",
            ],
            "--post-logout-redirect-uri '/bye' must be an absolute",
        ),
        (["--redirect-uri", "https://a.example/cb"], "add --grant authorization_code"),
        (["--public", "--grant", "client_credentials"], "not client_credentials"),
        (
            ["--public", "--grant", "password", "--redirect-uri", "https://a.example/cb"],
            "not password",
        ),
        (["--redirect-uri"], "expected one argument"),
    ],
)
def test_bad_registration_is_one_line(tmp_path: Path, extra: list[str], fragment: str) -> None:
    _init(tmp_path)
    assert fragment in _one_line_error(_run(tmp_path, *CREATE, *extra))


def test_consents_list_and_revoke(tmp_path: Path) -> None:
    _init(tmp_path)
    created = _run(tmp_path, "users", "create", "alice", "--password-stdin", input="password-1\n")
    assert created.returncode == 0, created.stderr
    none = _run(tmp_path, "users", "consents", "alice")
    assert none.stdout == "user alice has approved no client\n"
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        user = AccountStore(engine).get_user("alice")
        assert user is not None
        consents = ConsentStore(engine)
        consents.grant(user.user_id, "web", {"openid", "photos:read"}, "photos", 1_700_000_000.0)
        consents.grant(user.user_id, "other", {"openid"}, "contacts", 1_700_000_000.0)
    finally:
        engine.dispose()
    listed = json.loads(_run(tmp_path, "users", "consents", "alice", "--json").stdout)
    assert listed == [
        {
            "client_id": "other",
            "scope": "openid",
            "audiences": ["contacts"],
            "granted_at": 1_700_000_000.0,
        },
        {
            "client_id": "web",
            "scope": "openid photos:read",
            "audiences": ["photos"],
            "granted_at": 1_700_000_000.0,
        },
    ]
    table = _run(tmp_path, "users", "consents", "alice").stdout.splitlines()
    assert table[0].split() == ["CLIENT", "GRANTED", "(UTC)", "AUDIENCES", "SCOPE"]
    assert table[2].split()[0] == "web"
    revoked = _run(tmp_path, "users", "revoke-consent", "alice", "web")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    again = _one_line_error(_run(tmp_path, "users", "revoke-consent", "alice", "web"))
    assert "user alice has no consent for client 'web'" in again
    remaining = json.loads(_run(tmp_path, "users", "consents", "alice", "--json").stdout)
    assert [c["client_id"] for c in remaining] == ["other"]
    assert "no user 'bob'" in _one_line_error(_run(tmp_path, "users", "consents", "bob"))
    assert "no user 'bob'" in _one_line_error(
        _run(tmp_path, "users", "revoke-consent", "bob", "web")
    )


@pytest.mark.parametrize("command", ["disable", "set-password"])
def test_disable_and_set_password_end_the_sign_in_sessions(tmp_path: Path, command: str) -> None:
    _init(tmp_path)
    for name in ("alice", "bob"):
        made = _run(tmp_path, "users", "create", name, "--password-stdin", input="password-1\n")
        assert made.returncode == 0, made.stderr
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        accounts = AccountStore(engine)
        sessions = SessionStore(engine, idle_ttl=1800, ttl=28800)
        ids = {}
        for name in ("alice", "bob"):
            user = accounts.get_user(name)
            assert user is not None
            ids[name] = user.user_id
        now = time.time()
        alice, _ = sessions.create(ids["alice"], now)
        bob, _ = sessions.create(ids["bob"], now)
        if command == "disable":
            result = _run(tmp_path, "users", "disable", "alice")
        else:
            result = _run(
                tmp_path, "users", command, "alice", "--password-stdin", input="pw-2345678\n"
            )
        assert result.returncode == 0, result.stderr
        assert sessions.find(alice, time.time()) is None
        assert sessions.find(bob, time.time()) is not None
    finally:
        engine.dispose()
