"""The ``issuer`` command: serve, and manage clients, users and keys.

Expected errors print one line on stderr and exit 2; nothing prints a traceback for them.
Only ``issuer serve`` and ``issuer init`` create a store (the SQLite file or the schema, the
generated key-encryption secret, the first signing key); every other command refuses, with one
line naming the database it looked for, when the store is missing or not migrated.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from drill.config import add_arguments as add_drill_arguments
from issuer import audit
from issuer.accounts import AccountStore
from issuer.db import create_store, describe_database, head_revision, open_store
from issuer.keys import KeyAdmin, KeySealer, find_secret, open_key_repository, prepare_keys
from issuer.refresh import RefreshTokenStore
from issuer.seed import seed_demo, walkthrough
from issuer.settings import IssuerSettings
from serving.cli import COMMON_FAILURES, CLIError, Parser, add_serve_arguments, run_command
from serving.server import serve
from shared.clock import system_clock
from shared.protocol import GRANT_TYPES
from shared.scopes import parse_scope

PROG = "issuer"


def _settings() -> IssuerSettings:
    return IssuerSettings.from_env()


def _accounts(settings: IssuerSettings) -> AccountStore:
    """The accounts of an existing, migrated store (refused otherwise: see ``open_store``)."""
    return AccountStore(open_store(settings.database_url, pool_size=settings.database_pool_size))


def _key_admin(settings: IssuerSettings) -> KeyAdmin:
    """Key administration on an existing store: no secret is generated and no key created
    (``keys rotate`` and the revocation of the signing key make theirs on purpose)."""
    engine = open_store(settings.database_url, pool_size=settings.database_pool_size)
    repo = open_key_repository(settings, engine, system_clock(), create=False)
    return KeyAdmin(repo)


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = at - now
    if abs(delta) < 1:
        return f"{stamp} (now)"
    if delta > 0:
        return f"{stamp} (in {_duration(delta)})"
    return f"{stamp} ({_duration(-delta)} ago)"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


# -- commands -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    from issuer.container import build_issuer

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    # Fail fast with one line (bad secret, unreachable database) before uvicorn starts.
    issuer = build_issuer(settings)
    issuer.keyring.repo.engine.dispose()
    serve(
        "issuer.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=settings.log_level,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
        forwarded_allow_ips=args.forwarded_allow_ips,
        limits=settings.connections,
    )


def cmd_init(args: argparse.Namespace) -> None:
    """Create the store (SQLite file or schema, migrated to head), the key-encryption secret
    file when none is configured, and the first signing key; say what was made. Idempotent."""
    settings = _settings()
    # A bad secret is refused before anything is created.
    given = find_secret(
        settings.secret_key, settings.secret_key_file, settings.default_secret_key_file
    )
    if given is not None:
        KeySealer(given)
    where = describe_database(settings.database_url)
    engine, before, created_file = create_store(settings.database_url, pool_size=1)
    try:
        opened = prepare_keys(settings, engine, system_clock(), create=True, announce=False)
    finally:
        engine.dispose()
    head = head_revision()
    kid = opened.signing.kid if opened.signing is not None else None
    if args.json:
        _print_json(
            {
                "database": where,
                "created_database": created_file,
                "schema_revision_before": before,
                "schema_revision": head,
                "secret": opened.secret_source,
                "generated_secret": opened.generated_secret,
                "signing_kid": kid,
                "created_signing_key": opened.created_signing_key,
            }
        )
        return
    made: list[str] = []
    if created_file:
        made.append(f"created the database {where} (schema revision {head})")
    elif before is None:
        made.append(f"set up the issuer schema (revision {head}) in {where}")
    elif before != head:
        made.append(f"upgraded the schema of {where} from revision {before} to {head}")
    if opened.generated_secret:
        made.append(
            f"generated the key-encryption secret {opened.secret_source} (mode 0600): "
            "back it up, or set ISSUER_SECRET_KEY"
        )
    if opened.created_signing_key:
        made.append(f"created signing key {kid}")
    if not made:
        made.append(
            f"nothing to do: {where} is at schema revision {head} and signing key {kid} signs"
        )
    sys.stdout.write("".join(f"{line}\n" for line in made))


def cmd_clients_create(args: argparse.Namespace) -> None:
    scopes = parse_scope(args.scope)  # RFC 6749 §3.3, refused before the store is opened
    accounts = _accounts(_settings())
    client, secret = accounts.create_client(
        name=args.name,
        scopes=scopes,
        audiences=args.audience,
        grant_types=args.grant or ["client_credentials"],
        now=system_clock(),
        client_id=args.client_id,
    )
    result = {
        "client_id": client.client_id,
        "client_secret": secret,
        "name": client.name,
        "scope": " ".join(sorted(client.scopes)),
        "audiences": list(client.audiences),
        "grant_types": sorted(client.grant_types),
    }
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(
            f"client_id:     {client.client_id}\n"
            f"client_secret: {secret}\n"
            "The secret is shown only now; it is stored hashed.\n"
        )


def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CLIError("no password on standard input")
    return password


def cmd_users_create(args: argparse.Namespace) -> None:
    scopes = parse_scope(args.scope)  # RFC 6749 §3.3, refused before the store is opened
    if not args.password_stdin:
        raise CLIError("pass the password on standard input with --password-stdin")
    password = _read_password_stdin()
    accounts = _accounts(_settings())
    user = accounts.create_user(
        username=args.username,
        password=password,
        scopes=scopes,
        now=system_clock(),
    )
    sys.stdout.write(f"created user {user.username} (sub user:{user.user_id})\n")


def cmd_users_disable(args: argparse.Namespace, disabled: bool = True) -> None:
    settings = _settings()
    accounts = _accounts(settings)
    user = accounts.set_user_disabled(args.username, disabled)
    ended = 0
    if disabled:
        ended = RefreshTokenStore(accounts.engine, ttl=settings.refresh_token_ttl).revoke_user(
            user.user_id, system_clock()
        )
    audit.AuditLog(accounts.engine).record(
        audit.USER_DISABLED if disabled else audit.USER_ENABLED,
        subject=user.subject,
        detail=f"by the CLI; {ended} refresh tokens revoked" if disabled else "by the CLI",
    )
    sys.stdout.write(f"user {user.username} {'disabled' if disabled else 'enabled'}\n")


def cmd_users_set_password(args: argparse.Namespace) -> None:
    if not args.password_stdin:
        raise CLIError("pass the new password on standard input with --password-stdin")
    password = _read_password_stdin()
    settings = _settings()
    accounts = _accounts(settings)
    user = accounts.set_user_password(args.username, password)
    ended = RefreshTokenStore(accounts.engine, ttl=settings.refresh_token_ttl).revoke_user(
        user.user_id, system_clock()
    )
    audit.AuditLog(accounts.engine).record(
        audit.USER_PASSWORD_CHANGED,
        subject=user.subject,
        detail=f"by the CLI; {ended} refresh tokens revoked",
    )
    sys.stdout.write(f"password changed for {user.username}; their refresh tokens are revoked\n")


def cmd_audit(args: argparse.Namespace) -> None:
    if not 1 <= args.limit <= 100_000:
        raise CLIError("--limit must be between 1 and 100000")
    events = audit.AuditLog(_accounts(_settings()).engine).recent(args.limit)
    if args.json:
        _print_json([e.to_dict() for e in events])
        return
    rows = [
        (
            datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.event,
            e.client_id or "-",
            e.subject or "-",
            e.address or "-",
            e.detail,
        )
        for e in events
    ]
    headers = ("TIME (UTC)", "EVENT", "CLIENT", "SUBJECT", "ADDRESS", "DETAIL")
    sys.stdout.write(_table(headers, rows))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell (``user:<32 hex>`` subjects, IPv6 addresses, long
    client ids), two spaces apart; the last column is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    lines = []
    for cells in [headers, *rows]:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip() + "\n")
    return "".join(lines)


def cmd_keys_list(args: argparse.Namespace) -> None:
    admin = _key_admin(_settings())
    keys = admin.list()
    if args.json:
        _print_json(keys)
        return
    now = admin.clock()
    sys.stdout.write(f"{'KID':<45} {'STATE':<10} {'SIGNING':<8} {'ACTIVATES':<32} LEAVES JWKS\n")
    for key in keys:
        leaves = key["revoked_at"] if key["revoked_at"] is not None else key["remove_at"]
        sys.stdout.write(
            f"{key['kid']:<45} {key['state']:<10} {'yes' if key['signing'] else '':<8} "
            f"{_when(key['activate_at'], now):<32} {_when(leaves, now)}\n"
        )


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    record = _key_admin(_settings()).rotate(now=args.now)
    if args.json:
        _print_json(record)
        return
    now = record["now"]
    previous = record["previous_kid"] or "the previous key"
    if args.now:
        sys.stdout.write(
            f"rotated: {record['kid']} signs from now; {previous} stays published "
            "until its tokens expire\n"
        )
        return
    sys.stdout.write(
        f"rotation scheduled: {record['kid']} is published now and signs from "
        f"{_when(record['activate_at'], now)}; {previous} signs until then and stays "
        "published until its tokens expire (use --now to switch at once)\n"
    )


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    """Revoking a key that is already revoked changes nothing, writes no audit event, says
    "already revoked" and exits 0 (the key is in the state asked for; scripts may retry)."""
    record = _key_admin(_settings()).revoke(args.kid)
    if args.json:
        _print_json(record)
        return
    if record["already_revoked"]:
        sys.stdout.write(
            f"already revoked: {record['kid']} was revoked "
            f"{_when(record['revoked_at'], record['now'])}; nothing changed\n"
        )
    else:
        sys.stdout.write(f"revoked: {record['kid']} is no longer published\n")
    if record["signing_kid"]:
        sys.stdout.write(f"signing key: {record['signing_kid']}\n")


def cmd_drill(args: argparse.Namespace) -> None:
    from drill.config import DrillError, config_from_args
    from drill.report import format_report
    from drill.runner import run_drill

    try:
        config = config_from_args(args, stdin=sys.stdin)
        report = run_drill(config, progress=None if args.quiet else sys.stderr)
    except DrillError as exc:
        raise CLIError(str(exc)) from None
    text = format_report(report)
    if args.json == "-":
        sys.stderr.write(text)
        _print_json(report)
    else:
        sys.stdout.write(text)
        if args.json:
            try:
                Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            except OSError as exc:
                raise CLIError(f"cannot write {args.json}: {exc.strerror}") from None
    if not report["ok"]:
        raise SystemExit(1)


def cmd_seed(args: argparse.Namespace) -> None:
    settings = _settings()
    accounts = _accounts(settings)
    creds = seed_demo(accounts, Path(args.credentials_file), system_clock())
    if args.json:
        sys.stdout.write(json.dumps(creds) + "\n")
        return
    sys.stdout.write(walkthrough(creds, settings.issuer_url, args.photos_url, args.contacts_url))


# -- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Keyhouse token issuer")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    serve = sub.add_parser("serve", help="run the issuer HTTP server")
    add_serve_arguments(serve, port=8000)
    serve.add_argument("--ssl-keyfile", help="serve https with this PEM private key")
    serve.add_argument("--ssl-certfile", help="serve https with this PEM certificate chain")
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser(
        "init",
        help="create the store: database (or schema), key-encryption secret, first signing key",
        description="Create what the issuer needs and say what was made: the SQLite file (or "
        "the schema in an existing PostgreSQL database), migrated to the newest revision; the "
        "key-encryption secret file when neither ISSUER_SECRET_KEY nor ISSUER_SECRET_KEY_FILE "
        "is set; a first signing key. Safe to run again (it upgrades the schema). `issuer "
        "serve` does the same on start; every other command needs an existing store.",
    )
    init.add_argument("--json", action="store_true")
    init.set_defaults(func=cmd_init)

    clients = sub.add_parser("clients", help="manage OAuth clients")
    csub = clients.add_subparsers(dest="clients_command", required=True, parser_class=Parser)
    create = csub.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", default="", help='space-separated, e.g. "photos:read"')
    create.add_argument("--audience", action="append", required=True)
    create.add_argument("--grant", action="append", choices=GRANT_TYPES)
    create.add_argument("--client-id", help="choose the client_id (default: random)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_clients_create)

    users = sub.add_parser("users", help="manage users")
    usub = users.add_subparsers(dest="users_command", required=True, parser_class=Parser)
    ucreate = usub.add_parser("create", help="create a user")
    ucreate.add_argument("username")
    ucreate.add_argument("--password-stdin", action="store_true")
    ucreate.add_argument("--scope", default="")
    ucreate.set_defaults(func=cmd_users_create)
    udisable = usub.add_parser("disable", help="disable a user and end their sessions")
    udisable.add_argument("username")
    udisable.set_defaults(func=cmd_users_disable)
    uenable = usub.add_parser("enable", help="enable a disabled user")
    uenable.add_argument("username")
    uenable.set_defaults(func=lambda a: cmd_users_disable(a, disabled=False))
    upass = usub.add_parser("set-password", help="change a user's password and end their sessions")
    upass.add_argument("username")
    upass.add_argument("--password-stdin", action="store_true")
    upass.set_defaults(func=cmd_users_set_password)

    audit_cmd = sub.add_parser("audit", help="show the security audit log, newest first")
    audit_cmd.add_argument("--json", action="store_true")
    audit_cmd.add_argument("--limit", type=int, default=50)
    audit_cmd.set_defaults(func=cmd_audit)

    keys = sub.add_parser("keys", help="manage signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, parser_class=Parser)
    klist = ksub.add_parser("list", help="list keys and their states")
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=cmd_keys_list)
    krotate = ksub.add_parser(
        "rotate",
        help="publish the next key now; it signs after ISSUER_KEY_PUBLISH_AHEAD seconds",
    )
    krotate.add_argument(
        "--now", action="store_true", help="sign with the new key at once (not published ahead)"
    )
    krotate.add_argument("--json", action="store_true")
    krotate.set_defaults(func=cmd_keys_rotate)
    krevoke = ksub.add_parser("revoke", help="unpublish a key at once")
    krevoke.add_argument("kid")
    krevoke.add_argument("--json", action="store_true")
    krevoke.set_defaults(func=cmd_keys_revoke)

    drill = sub.add_parser(
        "drill",
        help="rotate and revoke keys under verification load against a running stack",
        description="Planned key rotations and an emergency revocation under live load; "
        "exits 1 when a valid request failed or revocation exceeded its bound.",
    )
    add_drill_arguments(drill)
    drill.set_defaults(func=cmd_drill)

    seed = sub.add_parser("seed", help="create the demo client and user (idempotent)")
    seed.add_argument("--credentials-file", default="var/demo-credentials.json")
    seed.add_argument("--photos-url", default="http://127.0.0.1:8001")
    seed.add_argument("--contacts-url", default="http://127.0.0.1:8002")
    seed.add_argument("--json", action="store_true")
    seed.set_defaults(func=cmd_seed)
    return parser


_REVOKE_OPTIONS = frozenset({"-h", "--help", "--json"})


def protect_kid(argv: Sequence[str]) -> list[str]:
    """A ``kid`` is an RFC 7638 thumbprint in base64url and may start with ``-``: argparse would
    take ``keys revoke -Abc...`` for an option, so such a ``kid`` is moved behind an explicit
    ``--`` at the end (where the options before or after it, ``--json``, still count)."""
    args = list(argv)
    for i in range(len(args) - 2):
        if args[i : i + 2] == ["keys", "revoke"]:
            rest = args[i + 2 :]
            if "--" in rest:
                break
            kids = [a for a in rest if a.startswith("-") and a not in _REVOKE_OPTIONS]
            if len(kids) == 1:
                rest.remove(kids[0])
                args[i + 2 :] = [*rest, "--", kids[0]]
            break
    return args


# A database failure exits 1 naming only its kind (its message may hold a URL with a password).
FAILURES = {
    **COMMON_FAILURES,
    SQLAlchemyError: (1, lambda exc: f"database error: {type(exc).__name__}"),
}


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    return run_command(parser, protect_kid(sys.argv[1:] if argv is None else argv), FAILURES)


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
