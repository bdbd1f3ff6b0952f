"""The ``webapp`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from serving.cli import (
    CLIError,
    Parser,
    add_serve_arguments,
    configure_logging,
    run_command,
    serve_from_args,
)
from webapp.settings import DEFAULT_PORT, WebappSettings

PROG = "webapp"


def cmd_serve(args: argparse.Namespace) -> None:
    if args.workers != 1:
        # Sessions live in the process's memory: a second worker would not know them.
        raise CLIError("the web app keeps its sessions in memory: run it with one worker")
    settings = WebappSettings.from_env()  # validate now: one line on bad configuration
    configure_logging(settings.log_level)
    # httpx logs every request at INFO: a page view is two to four calls. Its warnings stay.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    serve_from_args(
        "webapp.asgi:app", args, log_level=settings.log_level, limits=settings.connections
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Keyhouse demo web app (backend-for-frontend)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    serve = sub.add_parser("serve", help="run the web app")
    add_serve_arguments(serve, port=DEFAULT_PORT)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
