"""The ``issuer`` and ``resource-service`` commands as a shell user meets them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import BIN, base_env, free_port


def _run(
    tmp_path: Path,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    prog: str = "issuer",
) -> subprocess.CompletedProcess[str]:
    full_env = base_env(
        ISSUER_DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite",
        ISSUER_SECRET_KEY="cli-test-secret-0123456789",
    )
    full_env.update(env or {})
    return subprocess.run(
        [str(BIN / prog), *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=60,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_clients_create_json(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "clients",
        "create",
        "--name",
        "svc",
        "--scope",
        "photos:read",
        "--audience",
        "photos",
        "--audience",
        "contacts",
        "--grant",
        "client_credentials",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["client_secret"]) >= 43
    assert data["audiences"] == ["photos", "contacts"]


def test_users_create_and_duplicate(tmp_path: Path) -> None:
    ok = _run(
        tmp_path,
        "users",
        "create",
        "bob",
        "--password-stdin",
        "--scope",
        "photos:read",
        input="a long password\n",
    )
    assert ok.returncode == 0, ok.stderr
    again = _run(tmp_path, "users", "create", "bob", "--password-stdin", input="another pw\n")
    assert "already exists" in _one_line_error(again)


def test_keys_list_rotate_revoke(tmp_path: Path) -> None:
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert [k["state"] for k in keys] == ["active"]
    assert _run(tmp_path, "keys", "rotate").returncode == 0
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert len(keys) == 2
    assert sum(k["signing"] for k in keys) == 1
    old = next(k["kid"] for k in keys if not k["signing"])
    assert _run(tmp_path, "keys", "revoke", old).returncode == 0
    states = {
        k["kid"]: k["state"] for k in json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    }
    assert states[old] == "revoked"


@pytest.mark.parametrize(
    ("args", "stdin", "env", "fragment"),
    [
        (
            ["clients", "create", "--name", "x", "--audience", "a", "--grant", "implicit"],
            None,
            {},
            "invalid choice",
        ),
        (["clients", "create", "--name", "x"], None, {}, "--audience"),
        (
            ["clients", "create", "--name", "x", "--audience", "a", "--scope", 'bad"scope'],
            None,
            {},
            "scope",
        ),
        (["users", "create", "eve", "--password-stdin"], "", {}, "no password"),
        (["users", "create", "eve", "--password-stdin"], "short\n", {}, "at least 8"),
        (["users", "create", "eve"], None, {}, "--password-stdin"),
        (["keys", "revoke", "no-such-kid"], None, {}, "no signing key"),
        (["keys", "list"], None, {"ISSUER_DATABASE_URL": "mysql://x"}, "ISSUER_DATABASE_URL"),
        (["keys", "list"], None, {"ISSUER_ACCESS_TOKEN_TTL": "soon"}, "ISSUER_ACCESS_TOKEN_TTL"),
        (["keys", "list"], None, {"ISSUER_SECRET_KEY": "short"}, "at least 16"),
        (["bogus"], None, {}, "invalid choice"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, args: list[str], stdin: str | None, env: dict[str, str], fragment: str
) -> None:
    assert fragment in _one_line_error(_run(tmp_path, *args, input=stdin, env=env))


def test_wrong_secret_key_is_one_line(tmp_path: Path) -> None:
    assert _run(tmp_path, "keys", "list").returncode == 0
    wrong = {"ISSUER_SECRET_KEY": "another-secret-abcdef"}
    assert "wrong ISSUER_SECRET_KEY" in _one_line_error(_run(tmp_path, "keys", "rotate", env=wrong))
    port = str(free_port())
    assert "wrong ISSUER_SECRET_KEY" in _one_line_error(
        _run(tmp_path, "serve", "--port", port, env=wrong)
    )
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert len(keys) == 1  # nothing was sealed with the wrong secret


def test_generated_secret_key_file_is_0600(tmp_path: Path) -> None:
    env = base_env(ISSUER_DATABASE_URL=f"sqlite:///{tmp_path}/var/issuer.db")
    result = subprocess.run(
        [str(BIN / "issuer"), "keys", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    secret_file = tmp_path / "var" / "issuer-secret.key"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert "ISSUER_SECRET_KEY" in result.stderr  # the warning
    db = (tmp_path / "var" / "issuer.db").read_bytes()
    assert b"PRIVATE KEY" not in db  # sealed at rest


def test_resource_service_bad_name(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", "--name", "Bad Name", prog="resource-service")
    assert "RESOURCE_NAME" in _one_line_error(result)
    insecure = _run(
        tmp_path,
        "serve",
        "--name",
        "photos",
        prog="resource-service",
        env={"RESOURCE_ISSUER": "http://issuer.example"},
    )
    assert "https" in _one_line_error(insecure)
