"""What the ``issuer`` and ``resource-service`` commands share: a parser whose usage errors are
one line, the ``serve`` options, and the runner that turns an expected failure into one line on
stderr and an exit status (never a traceback)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from serving.limits import ConnectionLimits
from serving.server import FORWARDED_ALLOW_IPS_HELP, serve
from shared.errors import KeyhouseError

Command = Callable[[argparse.Namespace], None]
# An expected failure type -> the status it exits with and how it reads as one line.
Failures = Mapping[type[BaseException], tuple[int, Callable[[BaseException], str]]]


class CLIError(Exception):
    """An expected failure of a command: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as ``PROG: error: MESSAGE`` (exit 2), without the usage dump."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def add_serve_arguments(serve: argparse.ArgumentParser, *, port: int) -> None:
    """The options every Keyhouse ``serve`` command takes."""
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=port)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log every request (slower)")
    serve.add_argument("--forwarded-allow-ips", metavar="IPS", help=FORWARDED_ALLOW_IPS_HELP)


def configure_logging(log_level: str) -> None:
    """The service's own loggers at ``log_level`` (uvicorn's ``log_level`` covers only
    uvicorn's), one line a record."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s %(message)s")


def serve_from_args(
    factory: str,
    args: argparse.Namespace,
    *,
    log_level: str,
    limits: ConnectionLimits,
    ssl_keyfile: str | None = None,
    ssl_certfile: str | None = None,
) -> None:
    """``serve()`` with the options :func:`add_serve_arguments` added to ``args``."""
    serve(
        factory,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=log_level,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        forwarded_allow_ips=args.forwarded_allow_ips,
        limits=limits,
    )


def _description(exc: BaseException) -> str:
    return exc.description if isinstance(exc, KeyhouseError) else str(exc)


COMMON_FAILURES: Failures = {KeyhouseError: (2, _description), CLIError: (2, str)}


def run_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    failures: Failures = COMMON_FAILURES,
) -> int:
    """Parses ``argv``, runs the chosen command (``args.func``) and returns the exit status: 0, the
    status of an expected failure (with one line on stderr), or 130 on Ctrl-C."""
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        func(args)
    except KeyboardInterrupt:
        return 130
    except tuple(failures) as exc:
        for kind, (status, describe) in failures.items():
            if isinstance(exc, kind):
                sys.stderr.write(f"{parser.prog}: error: {describe(exc)}\n")
                return status
        raise  # pragma: no cover (the except clause caught one of these types)
    return 0
