"""The drill's options: the ``issuer drill`` arguments, their checks and the frozen settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
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
    rate: float = 0.0
    duration: float = 0.0
    warmup: float = 2.0
    poll_interval: float = 60.0
    revocation_margin: float = 5.0
    token_interval: float = 0.5
    timeout: float = 10.0
    revoke_user: str | None = None
    user_password: str | None = None
    probes: int = 20
    refusal_deadline: float = 20.0
    html: Path | None = None

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
    drill.add_argument(
        "--revoke-user",
        metavar="USERNAME",
        help="disable this user (admin API) while its tokens are in the load; enabled again after",
    )
    drill.add_argument(
        "--user-password-stdin",
        action="store_true",
        help="read the --revoke-user password from stdin (the line after the client secret)",
    )
    drill.add_argument(
        "--user-password-file",
        metavar="FILE",
        help="read the --revoke-user password from the first line of FILE",
    )
    drill.add_argument(
        "--probes",
        type=int,
        default=20,
        help="probes per service holding revoked tokens, for p50/p99/max of the refusal (20)",
    )
    drill.add_argument(
        "--refusal-deadline",
        type=float,
        default=20.0,
        help="seconds to probe a user's tokens for a refusal before reporting none (20)",
    )
    drill.add_argument(
        "--html", metavar="FILE", help="also write the report with its timeline as HTML to FILE"
    )
    drill.add_argument("--concurrency", type=int, default=8, help="load workers in all (8)")
    drill.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="at most this many load requests a second in all (0: as fast as answered)",
    )
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
        (
            args.rotations or args.revoke or args.revoke_user,
            "nothing to drill: use --rotations K, --revoke and/or --revoke-user USERNAME",
        ),
        (args.interval > 0, "--interval must be positive"),
        (1 <= args.concurrency <= 1000, "--concurrency must be between 1 and 1000"),
        (0 <= args.rate < float("inf"), "--rate must be a number of requests a second, or 0"),
        (args.duration >= 0, "--duration must not be negative"),
        (args.poll_interval > 0, "--poll-interval must be positive"),
        (args.revocation_margin >= 0, "--revocation-margin must not be negative"),
        (args.token_interval > 0, "--token-interval must be positive"),
        (args.warmup >= 0, "--warmup must not be negative"),
        (1 <= args.probes <= 500, "--probes must be between 1 and 500"),
        (args.refusal_deadline > 0, "--refusal-deadline must be positive"),
        (
            args.revoke_user is None or args.revoke_user.strip() != "",
            "--revoke-user needs a username",
        ),
        (
            not (args.user_password_stdin and args.user_password_file),
            "use one of --user-password-stdin and --user-password-file",
        ),
        (
            args.revoke_user is not None
            or not (args.user_password_stdin or args.user_password_file),
            "--user-password-stdin and --user-password-file go with --revoke-user",
        ),
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
    password = _user_password(args, stdin) if args.revoke_user is not None else None
    html = _html_path(args.html) if args.html else None
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
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        poll_interval=args.poll_interval,
        revocation_margin=args.revocation_margin,
        token_interval=args.token_interval,
        revoke_user=args.revoke_user.strip() if args.revoke_user is not None else None,
        user_password=password,
        probes=args.probes,
        refusal_deadline=args.refusal_deadline,
        html=html,
    )


def _user_password(args: argparse.Namespace, stdin: TextIO) -> str:
    """The ``--revoke-user`` password: the next line of ``stdin`` (after the client secret when
    that is read from stdin too) or the first line of ``--user-password-file``; never an
    argument, which other users of the machine could read."""
    if args.user_password_stdin:
        password = stdin.readline().rstrip("\r\n")
        source = "stdin"
    elif args.user_password_file:
        try:
            with open(args.user_password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise DrillError(f"cannot read --user-password-file: {reason}") from None
        source = args.user_password_file
    else:
        raise DrillError(
            "--revoke-user needs the user's password: --user-password-stdin or "
            "--user-password-file FILE"
        )
    if not password:
        raise DrillError(f"the --revoke-user password read from {source} is empty")
    return password


def _html_path(value: str) -> Path:
    """``--html FILE``, checked before the drill runs: a file (not a directory) in a directory
    that exists, so a finished drill does not lose its picture to a typo."""
    path = Path(value)
    if path.is_dir():
        raise DrillError(f"--html {value}: is a directory")
    if not path.parent.is_dir():
        raise DrillError(f"--html {value}: no directory {str(path.parent)!r}")
    return path
