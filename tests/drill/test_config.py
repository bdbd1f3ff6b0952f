"""The drill's options: one test per rule (each a one-line DrillError naming the option), and
how the --revoke-user password is read."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from drill.config import DrillConfig, DrillError, add_arguments, config_from_args

BASE = ["--resource", "photos=http://127.0.0.1:2", "--client-id", "admin"]


def _config(*args: str, stdin: str = "") -> DrillConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args([*BASE, *args]), stdin=io.StringIO(stdin))


def _error(*args: str, stdin: str = "") -> str:
    with pytest.raises(DrillError) as caught:
        _config(*args, stdin=stdin)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_of_the_new_options() -> None:
    cfg = _config("--client-secret", "s", "--revoke")
    assert cfg.revoke_user is None
    assert cfg.user_password is None
    assert cfg.probes == 20
    assert cfg.refusal_deadline == 20
    assert cfg.html is None


def test_revoke_user_alone_is_something_to_drill() -> None:
    cfg = _config(
        "--client-secret", "s", "--rotations", "0", "--revoke-user", "ada",
        "--user-password-stdin", stdin="pw one\n",
    )  # fmt: skip
    assert cfg.revoke_user == "ada"
    assert cfg.user_password == "pw one"
    assert not cfg.revoke


def test_the_password_is_the_line_after_the_client_secret_on_stdin() -> None:
    cfg = _config(
        "--client-secret-stdin", "--revoke-user", "ada", "--user-password-stdin",
        stdin="the-secret\n p w \nmore\n",
    )  # fmt: skip
    assert cfg.client_secret == "the-secret"
    assert cfg.user_password == " p w "  # a password is taken as it is, spaces included


def test_the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n")
    cfg = _config(
        "--client-secret", "s", "--revoke-user", "ada", "--user-password-file", str(secret)
    )
    assert cfg.user_password == "from-file"


def test_html_path_is_kept(tmp_path: Path) -> None:
    cfg = _config("--client-secret", "s", "--revoke", "--html", str(tmp_path / "r.html"))
    assert cfg.html == tmp_path / "r.html"


@pytest.mark.parametrize("probes", ["0", "501"])
def test_probes_out_of_range(probes: str) -> None:
    assert _error("--client-secret", "s", "--revoke", "--probes", probes) == (
        "--probes must be between 1 and 500"
    )


def test_rate_defaults_to_no_pace_and_is_kept() -> None:
    assert _config("--client-secret", "s", "--revoke").rate == 0
    assert _config("--client-secret", "s", "--revoke", "--rate", "40").rate == 40


@pytest.mark.parametrize("rate", ["-1", "nan", "inf"])
def test_rate_must_be_a_finite_non_negative_number(rate: str) -> None:
    assert _error("--client-secret", "s", "--revoke", "--rate", rate) == (
        "--rate must be a number of requests a second, or 0"
    )


def test_refusal_deadline_must_be_positive() -> None:
    assert _error("--client-secret", "s", "--revoke", "--refusal-deadline", "0") == (
        "--refusal-deadline must be positive"
    )


def test_revoke_user_needs_a_username() -> None:
    assert _error("--client-secret", "s", "--revoke-user", " ") == "--revoke-user needs a username"


def test_revoke_user_needs_a_password_source() -> None:
    assert "--user-password-stdin or --user-password-file" in _error(
        "--client-secret", "s", "--revoke-user", "ada"
    )


def test_one_password_source_only(tmp_path: Path) -> None:
    assert _error(
        "--client-secret", "s", "--revoke-user", "ada", "--user-password-stdin",
        "--user-password-file", str(tmp_path / "pw"),
    ) == "use one of --user-password-stdin and --user-password-file"  # fmt: skip


def test_password_options_need_revoke_user() -> None:
    assert _error("--client-secret", "s", "--revoke", "--user-password-stdin") == (
        "--user-password-stdin and --user-password-file go with --revoke-user"
    )


def test_empty_password_is_refused() -> None:
    message = _error(
        "--client-secret", "s", "--revoke-user", "ada", "--user-password-stdin", stdin="\n"
    )
    assert message == "the --revoke-user password read from stdin is empty"


def test_unreadable_password_file(tmp_path: Path) -> None:
    message = _error(
        "--client-secret", "s", "--revoke-user", "ada",
        "--user-password-file", str(tmp_path / "missing"),
    )  # fmt: skip
    assert message == "cannot read --user-password-file: No such file or directory"


def test_html_must_not_be_a_directory(tmp_path: Path) -> None:
    assert _error("--client-secret", "s", "--revoke", "--html", str(tmp_path)) == (
        f"--html {tmp_path}: is a directory"
    )


def test_html_directory_must_exist(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "r.html"
    assert _error("--client-secret", "s", "--revoke", "--html", str(target)) == (
        f"--html {target}: no directory {str(target.parent)!r}"
    )


def test_nothing_to_drill_names_every_action() -> None:
    assert _error("--client-secret", "s", "--rotations", "0") == (
        "nothing to drill: use --rotations K, --revoke and/or --revoke-user USERNAME"
    )
