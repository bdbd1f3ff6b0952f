"""``issuer ARGS`` in the test process (tests/support/cli.py): what a subprocess would have had,
and nothing of the test process's own state changed afterwards."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from tests.support import cli as runner
from tests.support.cli import run_issuer
from tests.support.postgres import PostgresServer
from tests.support.processes import base_env

SECRET = "cli-runner-secret-0123456789"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(
        ISSUER_DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite", ISSUER_SECRET_KEY=SECRET, **extra
    )


def test_exactly_the_given_environment_and_directory_then_the_tests_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISSUER_DATABASE_URL", "sqlite:////nonexistent/elsewhere.db")
    before_env, before_cwd = dict(os.environ), os.getcwd()
    env = {k: v for k, v in _env(tmp_path).items() if k != "ISSUER_DATABASE_URL"}
    made = run_issuer(["init"], env=env, cwd=tmp_path)  # the default store: ./var/issuer.db
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "var" / "issuer.db").is_file()
    assert dict(os.environ) == before_env
    assert os.getcwd() == before_cwd


def test_stdin_stdout_and_status(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_issuer(["init"], env=env, cwd=tmp_path).returncode == 0
    created = run_issuer(
        ["users", "create", "ada", "--password-stdin"],
        env=env,
        cwd=tmp_path,
        input="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    listed = run_issuer(["keys", "list", "--json"], env=env, cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == 1
    assert listed.stderr == ""


def test_a_usage_error_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = run_issuer(["keys", "frobnicate"], env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("issuer keys: error: argument keys_command: invalid choice")


def test_an_uncaught_exception_is_a_traceback_and_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(argv: list[str]) -> int:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(runner.cli, "main", broken)
    result = run_issuer(["keys", "list"], env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError: broken on purpose" in result.stderr


def test_a_logged_warning_reaches_stderr_as_in_an_unconfigured_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def warns(argv: list[str]) -> int:
        logging.getLogger("keyhouse.test").warning("a warning for the operator")
        logging.getLogger("keyhouse.test").info("not shown: below WARNING")
        return 0

    monkeypatch.setattr(runner.cli, "main", warns)
    handlers = list(logging.getLogger().handlers)
    result = run_issuer(["keys", "list"], env=_env(tmp_path), cwd=tmp_path)
    assert result.stderr == "a warning for the operator\n"
    assert logging.getLogger().handlers == handlers  # the stderr handler went with the command


def test_serve_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs as a process"):
        run_issuer(["serve"], env=_env(tmp_path), cwd=tmp_path)


@pytest.mark.postgres
def test_every_engine_is_disposed_so_the_database_can_be_dropped(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    name = f"t_{uuid.uuid4().hex[:20]}"
    url = postgres_server.create_database(name)
    env = base_env(ISSUER_DATABASE_URL=url, ISSUER_SECRET_KEY=SECRET)
    assert run_issuer(["init"], env=env, cwd=tmp_path).returncode == 0
    assert run_issuer(["keys", "list"], env=env, cwd=tmp_path).returncode == 0
    # DROP DATABASE without FORCE fails while any session is connected to it.
    assert postgres_server._admin_sql(f'DROP DATABASE "{name}"')
