"""The drill's options: the ``issuer drill`` arguments, their checks and the frozen settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TextIO


class DrillError(Exception):
    """The drill could not run (bad arguments, stack unreachable, credentials refused)."""


@dataclass(frozen=True)
class DrillConfig:
    issuer: str
    resources: dict[str, str]
    client_id: str
    client_secret: str
    load_client_id: str | None = None
    load_client_secret: str | None = None
    scope: str | None = None
    rotations: int = 2
    interval: float = 10.0
    revoke: bool = False
    concurrency: int = 8
    duration: float = 0.0
    warmup: float = 2.0
    poll_interval: float = 60.0
    revocation_margin: float = 5.0
    token_interval: float = 0.5
    timeout: float = 10.0

    @property
    def revocation_bound(self) -> float:
        return self.poll_interval + self.revocation_margin


def parse_resource(value: str) -> tuple[str, str]:
    name, sep, url = value.partition("=")
    name, url = name.strip(), url.strip().rstrip("/")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise DrillError(f"--resource must look like NAME=http://host:port, got {value!r}")
    return name, url


def add_arguments(drill: argparse.ArgumentParser) -> None:
    """The ``issuer drill`` options."""
    drill.add_argument("--issuer", default="http://127.0.0.1:8000", help="issuer base URL")
    drill.add_argument(
        "--resource",
        action="append",
        metavar="NAME=URL",
        help="a resource service to load (repeatable), e.g. photos=http://127.0.0.1:8001",
    )
    drill.add_argument(
        "--client-id", required=True, help="client with scope issuer:admin, audience issuer"
    )
    drill.add_argument("--client-secret")
    drill.add_argument("--client-secret-stdin", action="store_true")
    drill.add_argument(
        "--load-client-id", help="client for the load tokens (default: the admin client)"
    )
    drill.add_argument("--load-client-secret")
    drill.add_argument("--scope", help="scope to request for load tokens (default: all)")
    drill.add_argument("--rotations", type=int, default=2, help="planned rotations (2)")
    drill.add_argument(
        "--interval", type=float, default=10.0, help="seconds between rotations (10)"
    )
    drill.add_argument("--revoke", action="store_true", help="end with one emergency revocation")
    drill.add_argument("--concurrency", type=int, default=8, help="load workers in all (8)")
    drill.add_argument(
        "--duration", type=float, default=0.0, help="minimum seconds of load (0: the timetable)"
    )
    drill.add_argument("--warmup", type=float, default=2.0, help="seconds of load first (2)")
    drill.add_argument(
        "--poll-interval",
        type=float,
        default=60.0,
        help="the services' RESOURCE_JWKS_POLL_INTERVAL (60)",
    )
    drill.add_argument(
        "--revocation-margin",
        type=float,
        default=5.0,
        help="revocation bound = poll interval + this (5)",
    )
    drill.add_argument(
        "--token-interval", type=float, default=0.5, help="seconds between load tokens (0.5)"
    )
    drill.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write the report as JSON to FILE (no FILE or -: stdout)",
    )
    drill.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace, *, stdin: TextIO) -> DrillConfig:
    """The settings the parsed options describe (the secret read from ``stdin`` when asked);
    :class:`DrillError` naming the first option that is wrong."""
    resources = dict(parse_resource(r) for r in args.resource or [])
    if not resources:
        raise DrillError("name at least one resource service with --resource NAME=URL")
    if not args.issuer.startswith(("http://", "https://")):
        raise DrillError(f"--issuer must be an http(s) URL, got {args.issuer!r}")
    checks = [
        (args.rotations >= 0, "--rotations must not be negative"),
        (args.rotations or args.revoke, "nothing to drill: use --rotations K and/or --revoke"),
        (args.interval > 0, "--interval must be positive"),
        (1 <= args.concurrency <= 1000, "--concurrency must be between 1 and 1000"),
        (args.duration >= 0, "--duration must not be negative"),
        (args.poll_interval > 0, "--poll-interval must be positive"),
        (args.revocation_margin >= 0, "--revocation-margin must not be negative"),
        (args.token_interval > 0, "--token-interval must be positive"),
        (args.warmup >= 0, "--warmup must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise DrillError(message)
    secret = args.client_secret
    if secret is None and args.client_secret_stdin:
        secret = stdin.readline().strip()
    if not secret:
        raise DrillError(
            "pass the admin client's secret with --client-secret or --client-secret-stdin"
        )
    if bool(args.load_client_id) != bool(args.load_client_secret):
        raise DrillError("--load-client-id and --load-client-secret go together")
    return DrillConfig(
        issuer=args.issuer.rstrip("/"),
        resources=resources,
        client_id=args.client_id,
        client_secret=secret,
        load_client_id=args.load_client_id,
        load_client_secret=args.load_client_secret,
        scope=args.scope,
        rotations=args.rotations,
        interval=args.interval,
        revoke=args.revoke,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        poll_interval=args.poll_interval,
        revocation_margin=args.revocation_margin,
        token_interval=args.token_interval,
    )
