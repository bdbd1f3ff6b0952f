"""The ``resource-service`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from resource_service.settings import ResourceSettings
from serving.cli import (
    Parser,
    add_serve_arguments,
    configure_logging,
    run_command,
    serve_from_args,
)

PROG = "resource-service"


def cmd_serve(args: argparse.Namespace) -> None:
    if args.name:
        os.environ["RESOURCE_NAME"] = args.name  # the worker processes build settings from env
    settings = ResourceSettings.from_env()  # validate now: one line on bad configuration
    # The service's own loggers at RESOURCE_LOG_LEVEL, as the issuer's (uvicorn's log_level
    # covers only uvicorn's: before, keyhouse.resource reached stderr only at WARNING and above).
    configure_logging(settings.log_level)
    serve_from_args(
        "resource_service.asgi:app", args, log_level=settings.log_level, limits=settings.connections
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Keyhouse resource service")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    serve = sub.add_parser("serve", help="run a resource service")
    serve.add_argument("--name", help="the service name, e.g. photos (RESOURCE_NAME)")
    add_serve_arguments(serve, port=8001)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
