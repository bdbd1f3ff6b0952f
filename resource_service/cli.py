"""The ``resource-service`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from resource_service.settings import ResourceSettings
from serving.server import FORWARDED_ALLOW_IPS_HELP, serve
from shared.errors import KeyhouseError

PROG = "resource-service"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def cmd_serve(args: argparse.Namespace) -> None:
    if args.name:
        os.environ["RESOURCE_NAME"] = args.name  # the worker processes build settings from env
    settings = ResourceSettings.from_env()  # validate now: one line on bad configuration
    # The service's own loggers at RESOURCE_LOG_LEVEL, as the issuer's (uvicorn's log_level
    # covers only uvicorn's: before, keyhouse.resource reached stderr only at WARNING and above).
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    serve(
        "resource_service.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=settings.log_level,
        forwarded_allow_ips=args.forwarded_allow_ips,
        limits=settings.connections,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Keyhouse resource service")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run a resource service")
    serve.add_argument("--name", help="the service name, e.g. photos (RESOURCE_NAME)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help=FORWARDED_ALLOW_IPS_HELP,
    )
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyhouseError as exc:
        sys.stderr.write(f"{PROG}: error: {exc.description}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
