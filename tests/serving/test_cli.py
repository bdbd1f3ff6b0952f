"""serving.cli: one-line usage errors and the runner's exit statuses, shared by both commands."""

from __future__ import annotations

import argparse

import pytest

from serving.cli import COMMON_FAILURES, CLIError, Parser, add_serve_arguments, run_command
from shared.errors import InvalidRequest


def _parser(func: object) -> Parser:
    parser = Parser(prog="tool")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    go = sub.add_parser("go")
    add_serve_arguments(go, port=1234)
    go.set_defaults(func=func)
    return parser


def test_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser(lambda args: None).parse_args(["go", "--port", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tool go: error: argument --port")


def test_serve_arguments_and_their_defaults() -> None:
    args = _parser(lambda args: None).parse_args(["go"])
    assert (args.host, args.port, args.workers, args.access_log) == ("127.0.0.1", 1234, 1, False)
    assert args.forwarded_allow_ips is None


def test_success_is_0() -> None:
    seen: list[argparse.Namespace] = []
    assert run_command(_parser(seen.append), ["go", "--port", "9"]) == 0
    assert seen[0].port == 9


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (InvalidRequest("bad thing"), "tool: error: bad thing\n"),
        (CLIError("no such user"), "tool: error: no such user\n"),
    ],
)
def test_expected_failures_are_one_line_and_exit_2(
    error: Exception, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace) -> None:
        raise error

    assert run_command(_parser(fail), ["go"]) == 2
    assert capsys.readouterr().err == line


def test_a_command_specific_failure_has_its_own_status(capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: argparse.Namespace) -> None:
        raise OSError("secret detail")

    failures = {**COMMON_FAILURES, OSError: (1, lambda exc: "disk trouble")}
    assert run_command(_parser(fail), ["go"], failures) == 1
    assert capsys.readouterr().err == "tool: error: disk trouble\n"


def test_ctrl_c_is_130() -> None:
    def interrupted(args: argparse.Namespace) -> None:
        raise KeyboardInterrupt

    assert run_command(_parser(interrupted), ["go"]) == 130


def test_an_unexpected_error_is_not_swallowed() -> None:
    def bug(args: argparse.Namespace) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_command(_parser(bug), ["go"])
