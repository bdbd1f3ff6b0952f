"""The ``issuer`` and ``resource-service`` commands as a shell user meets them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from alembic import command
from sqlalchemy import inspect

from issuer.accounts import AccountStore
from issuer.db import alembic_config, create_store, head_revision
from issuer.engines import make_engine
from issuer.seed import WEBAPP_CLIENT_ID
from tests.support.cli import run_issuer
from tests.support.postgres import PostgresServer
from tests.support.processes import BIN, base_env, free_port

ROOT = Path(__file__).resolve().parents[2]


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
    if prog == "issuer" and args[:1] != ("serve",):  # the command's code, no interpreter start
        return run_issuer(args, env=full_env, cwd=tmp_path, input=input)
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


def _init(tmp_path: Path) -> None:
    """``issuer init`` for ``_run``'s store (in this process, as ``_run`` runs it)."""
    made = _run(tmp_path, "init")
    assert made.returncode == 0, made.stderr


def test_clients_create_json(tmp_path: Path) -> None:
    _init(tmp_path)
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
    _init(tmp_path)
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
    _init(tmp_path)
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert [k["state"] for k in keys] == ["active"]
    assert _run(tmp_path, "keys", "rotate").returncode == 0
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert len(keys) == 2
    assert sum(k["signing"] for k in keys) == 1
    old = next(k["kid"] for k in keys if not k["signing"])
    first = _run(tmp_path, "keys", "revoke", old)
    assert first.returncode == 0
    assert first.stdout.startswith(f"revoked: {old} is no longer published\n")
    states = {
        k["kid"]: k["state"] for k in json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    }
    assert states[old] == "revoked"
    # Again: nothing changes, it says so, exits 0 (the key is as asked), no second audit event.
    again = _run(tmp_path, "keys", "revoke", old)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"already revoked: {old} was revoked ")
    assert "nothing changed" in again.stdout
    as_json = json.loads(_run(tmp_path, "keys", "revoke", old, "--json").stdout)
    assert as_json["already_revoked"] is True
    assert as_json["state"] == "revoked"
    events = json.loads(_run(tmp_path, "audit", "--json").stdout)
    assert [e["detail"] for e in events if e["event"] == "key_revoked"] == [f"kid={old}"]


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
    _init(tmp_path)
    assert fragment in _one_line_error(_run(tmp_path, *args, input=stdin, env=env))


def test_wrong_secret_key_is_one_line(tmp_path: Path) -> None:
    _init(tmp_path)
    wrong = {"ISSUER_SECRET_KEY": "another-secret-abcdef"}
    assert "wrong ISSUER_SECRET_KEY" in _one_line_error(_run(tmp_path, "keys", "rotate", env=wrong))
    port = str(free_port())
    assert "wrong ISSUER_SECRET_KEY" in _one_line_error(
        _run(tmp_path, "serve", "--port", port, env=wrong)
    )
    keys = json.loads(_run(tmp_path, "keys", "list", "--json").stdout)
    assert len(keys) == 1  # nothing was sealed with the wrong secret


def _bare(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``issuer ARGS`` with no ISSUER_* variable but ``env``: the defaults (./var/issuer.db)."""
    return subprocess.run(
        [str(BIN / "issuer"), *args],
        env=base_env(**env),
        cwd=cwd,
        input="a long password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_creates_the_store_says_what_it_made_and_is_idempotent(tmp_path: Path) -> None:
    made = _bare(tmp_path, "init")
    assert made.returncode == 0, made.stderr
    db_file = tmp_path / "var" / "issuer.db"
    secret_file = tmp_path / "var" / "issuer-secret.key"
    lines = made.stdout.splitlines()
    assert lines[0].startswith(f"created the database {db_file} (schema revision ")
    assert lines[1].startswith(f"generated the key-encryption secret {secret_file} (mode 0600)")
    assert lines[2].startswith("created signing key ")
    kid = lines[2].split()[-1]
    assert len(lines) == 3
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert b"PRIVATE KEY" not in db_file.read_bytes()  # sealed at rest
    again = _bare(tmp_path, "init")
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"nothing to do: {db_file} is at schema revision {lines[0].split()[-1][:-1]} "
        f"and signing key {kid} signs\n"
    )
    keys = json.loads(_bare(tmp_path, "keys", "list", "--json").stdout)
    assert [(k["kid"], k["signing"]) for k in keys] == [(kid, True)]
    as_json = json.loads(_bare(tmp_path, "init", "--json").stdout)
    assert as_json["created_database"] is False
    assert as_json["signing_kid"] == kid


# Every command but `init` and `serve`, as run by someone in the wrong directory.
NOT_CREATING = [
    ["keys", "list"],
    ["keys", "list", "--json"],
    ["keys", "rotate"],
    ["keys", "rotate", "--now"],
    ["keys", "revoke", "some-kid"],
    ["clients", "create", "--name", "x", "--audience", "photos", "--scope", "photos:read"],
    ["users", "create", "bob", "--password-stdin"],
    ["users", "disable", "bob"],
    ["users", "enable", "bob"],
    ["users", "set-password", "bob", "--password-stdin"],
    ["audit"],
    ["audit", "--json"],
    ["seed"],
]


@dataclass
class InProcess:
    """``issuer ARGS`` run in this process (tests/support/cli.py) in ``cwd`` with no ISSUER_*
    variable but those given, a password on stdin."""

    cwd: Path

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_issuer(args, env=base_env(**env), cwd=self.cwd, input="a long password\n")


@pytest.fixture
def issuer(tmp_path: Path) -> InProcess:
    return InProcess(tmp_path)


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """An empty directory with a short path, whatever the depth of pytest's temporary root
    (pytest-xdist adds a directory per worker): a message naming a path in it stays under
    the 200 characters an error description is cut to."""
    path = Path(tempfile.mkdtemp(prefix="kh-")).resolve()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("args", NOT_CREATING, ids=" ".join)
def test_commands_other_than_init_and_serve_never_create_a_store(
    short_tmp_path: Path, args: list[str]
) -> None:
    tmp_path = short_tmp_path
    result = InProcess(tmp_path)(*args)
    assert result.returncode == 2
    db_file = tmp_path / "var" / "issuer.db"
    assert result.stderr == (
        f"issuer: error: no issuer database at {db_file} "
        "(ISSUER_DATABASE_URL=sqlite:///var/issuer.db): create it with `issuer init` "
        "(or `issuer serve`)\n"
    )
    assert list(tmp_path.iterdir()) == []  # no database, no secret file, not even var/


def test_key_commands_never_generate_a_secret_nor_a_signing_key(
    tmp_path: Path, issuer: InProcess
) -> None:
    secret = {"ISSUER_SECRET_KEY": "given-in-the-environment-0123"}
    made = issuer("init", **secret)
    assert made.returncode == 0, made.stderr
    assert "secret" not in made.stdout  # nothing generated: the environment has it
    secret_file = tmp_path / "var" / "issuer-secret.key"
    # Without the secret, key commands refuse; they do not make a new one.
    for args in (["keys", "list"], ["keys", "rotate"]):
        error = _one_line_error(issuer(*args))
        assert "no key-encryption secret" in error
        assert str(secret_file) in error
    assert not secret_file.exists()
    # Commands that do not touch keys need no secret.
    created = issuer("clients", "create", "--name", "x", "--audience", "photos")
    assert created.returncode == 0, created.stderr
    # A store with no signing key (schema only): listing creates none; rotate does, on purpose.
    url = {"ISSUER_DATABASE_URL": f"sqlite:///{tmp_path / 'bare.db'}", **secret}
    engine, _before, _created = create_store(url["ISSUER_DATABASE_URL"])
    engine.dispose()
    assert json.loads(issuer("keys", "list", "--json", **url).stdout) == []
    assert json.loads(issuer("keys", "list", "--json", **url).stdout) == []
    assert issuer("keys", "rotate", "--now", **url).returncode == 0
    keys = json.loads(issuer("keys", "list", "--json", **url).stdout)
    assert sum(k["signing"] for k in keys) == 1


def test_serve_and_init_never_replace_a_lost_secret_of_stored_keys(
    tmp_path: Path, issuer: InProcess
) -> None:
    assert issuer("init").returncode == 0
    secret_file = tmp_path / "var" / "issuer-secret.key"
    secret_file.unlink()
    error = _one_line_error(issuer("init"))
    assert "the database holds signing keys but no secret opens them" in error
    assert not secret_file.exists()


def test_init_refuses_a_short_secret_before_creating_anything(
    tmp_path: Path, issuer: InProcess
) -> None:
    assert "at least 16" in _one_line_error(issuer("init", ISSUER_SECRET_KEY="short"))
    assert list(tmp_path.iterdir()) == []


def test_an_older_schema_is_refused_until_init_upgrades_it(
    tmp_path: Path, issuer: InProcess
) -> None:
    db_file = tmp_path / "old.db"
    env = {"ISSUER_DATABASE_URL": f"sqlite:///{db_file}", "ISSUER_SECRET_KEY": "s" * 20}
    engine = make_engine(env["ISSUER_DATABASE_URL"])
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    engine.dispose()
    head = head_revision()
    assert _one_line_error(issuer("audit", **env)) == (
        f"issuer: error: the database {db_file} is at schema revision 0002, this issuer needs "
        f"{head}: upgrade it with `issuer init` (or `issuer serve`)"
    )
    upgraded = issuer("init", **env)
    assert upgraded.stdout.splitlines()[0] == (
        f"upgraded the schema of {db_file} from revision 0002 to {head}"
    )
    assert issuer("audit", **env).returncode == 0


@pytest.mark.postgres
def test_a_postgresql_database_without_the_schema_is_refused_until_init(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    name = f"t_{uuid.uuid4().hex[:20]}"
    url = postgres_server.create_database(name)
    try:
        env = {"ISSUER_DATABASE_URL": url, "ISSUER_SECRET_KEY": "pg-cli-secret-0123456789"}
        shown = url.replace(postgres_server.password, "***")
        for args in (["keys", "list"], ["clients", "create", "--name", "x", "--audience", "a"]):
            result = _bare(tmp_path, *args, **env)
            assert _one_line_error(result) == (
                f"issuer: error: the database {shown} holds no issuer schema: create it with "
                "`issuer init` (or `issuer serve`)"
            )
            assert postgres_server.password not in result.stderr
        engine = make_engine(url)
        assert inspect(engine).get_table_names() == []  # nothing was migrated
        engine.dispose()
        # What the compose `init` service runs before the first `issuer serve`.
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        line = compose["services"]["init"]["command"]
        credentials = tmp_path / "demo.json"
        line = [
            part.replace("/var/lib/keyhouse/credentials/demo.json", str(credentials))
            for part in line
        ]
        seeded = subprocess.run(
            line,
            env={**base_env(**env), "PATH": f"{BIN}:{os.environ['PATH']}"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        assert seeded.stdout.startswith(f"set up the issuer schema (revision {head_revision()})")
        assert json.loads(credentials.read_text())["client_id"] == "demo-client"
        assert _bare(tmp_path, "keys", "list", **env).returncode == 0
        assert not (tmp_path / "var").exists()
    finally:
        postgres_server.drop_database(name)


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


def test_revoke_a_kid_that_starts_with_a_dash(tmp_path: Path) -> None:
    _init(tmp_path)
    # base64url thumbprints start with "-" one time in 64; argparse must not read an option.
    result = _run(tmp_path, "keys", "revoke", "-Xno-such-kid")
    assert "no signing key" in _one_line_error(result)
    assert "unrecognized" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "revoke", "-Xno-such-kid", "--json"],
        ["keys", "revoke", "--json", "-Xno-such-kid"],
        ["keys", "revoke", "--json", "--", "-Xno-such-kid"],
    ],
)
def test_a_dash_kid_with_options_around_it(
    tmp_path: Path, issuer: InProcess, args: list[str]
) -> None:
    env = {"ISSUER_SECRET_KEY": "a-test-secret-0123456789"}
    assert issuer("init", **env).returncode == 0
    assert "no signing key -Xno-such-kid" in _one_line_error(issuer(*args, **env))


def test_seed_registers_the_web_apps_redirect_uris_at_webapp_url(tmp_path: Path) -> None:
    _init(tmp_path)
    creds = tmp_path / "demo.json"
    result = _run(
        tmp_path, "seed", "--credentials-file", str(creds), "--webapp-url", "http://localhost:9003"
    )
    assert result.returncode == 0, result.stderr
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        client = AccountStore(engine).get_client(WEBAPP_CLIENT_ID)
    finally:
        engine.dispose()
    assert client is not None
    assert client.redirect_uris == ("http://localhost:9003/callback",)
    assert client.post_logout_redirect_uris == ("http://localhost:9003/signed-out",)
