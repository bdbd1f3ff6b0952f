"""The ``issuer`` command: serve, and manage clients, users and keys.

Expected errors print one line on stderr and exit 2; nothing prints a traceback for them.
Only ``issuer serve`` and ``issuer init`` create a store (the SQLite file or the schema, the
generated key-encryption secret, the first signing key); every other command refuses, with one
line naming the database it looked for, when the store is missing or not migrated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from drill.config import add_arguments as add_drill_arguments
from issuer.cli import accounts as accounts_cmd
from issuer.cli import drill as drill_cmd
from issuer.cli import keys as keys_cmd
from issuer.cli import store as store_cmd
from serving.cli import COMMON_FAILURES, Parser, add_serve_arguments, run_command
from shared.protocol import GRANT_TYPES

PROG = "issuer"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Keyhouse token issuer")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    serve_cmd = sub.add_parser("serve", help="run the issuer HTTP server")
    add_serve_arguments(serve_cmd, port=8000)
    serve_cmd.add_argument("--ssl-keyfile", help="serve https with this PEM private key")
    serve_cmd.add_argument("--ssl-certfile", help="serve https with this PEM certificate chain")
    serve_cmd.set_defaults(func=store_cmd.cmd_serve)

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
    init.set_defaults(func=store_cmd.cmd_init)

    clients = sub.add_parser("clients", help="manage OAuth clients")
    csub = clients.add_subparsers(dest="clients_command", required=True, parser_class=Parser)
    create = csub.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", default="", help='space-separated, e.g. "photos:read"')
    create.add_argument("--audience", action="append", required=True)
    create.add_argument("--grant", action="append", choices=GRANT_TYPES)
    create.add_argument("--client-id", help="choose the client_id (default: random)")
    create.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="an exact redirect URI for --grant authorization_code (repeatable)",
    )
    create.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        help="where /logout may send the user back to (repeatable)",
    )
    create.add_argument(
        "--public",
        action="store_true",
        help="no secret (an app on the user's device): authorization_code and refresh_token only",
    )
    create.add_argument(
        "--first-party", action="store_true", help="its users are not asked for consent"
    )
    create.add_argument(
        "--dpop",
        action="store_true",
        help="every token request must carry a DPoP proof (RFC 9449 dpop_bound_access_tokens)",
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=accounts_cmd.cmd_clients_create)

    users = sub.add_parser("users", help="manage users")
    usub = users.add_subparsers(dest="users_command", required=True, parser_class=Parser)
    ucreate = usub.add_parser("create", help="create a user")
    ucreate.add_argument("username")
    ucreate.add_argument("--password-stdin", action="store_true")
    ucreate.add_argument("--scope", default="")
    ucreate.set_defaults(func=accounts_cmd.cmd_users_create)
    udisable = usub.add_parser("disable", help="disable a user and end their sessions")
    udisable.add_argument("username")
    udisable.set_defaults(func=accounts_cmd.cmd_users_disable)
    uenable = usub.add_parser("enable", help="enable a disabled user")
    uenable.add_argument("username")
    uenable.set_defaults(func=lambda a: accounts_cmd.cmd_users_disable(a, disabled=False))
    upass = usub.add_parser("set-password", help="change a user's password and end their sessions")
    upass.add_argument("username")
    upass.add_argument("--password-stdin", action="store_true")
    upass.set_defaults(func=accounts_cmd.cmd_users_set_password)
    uconsents = usub.add_parser("consents", help="list the clients a user has approved")
    uconsents.add_argument("username")
    uconsents.add_argument("--json", action="store_true")
    uconsents.set_defaults(func=accounts_cmd.cmd_users_consents)
    urevoke = usub.add_parser(
        "revoke-consent", help="forget a user's approval of a client (asked again next sign-in)"
    )
    urevoke.add_argument("username")
    urevoke.add_argument("client_id")
    urevoke.set_defaults(func=accounts_cmd.cmd_users_revoke_consent)

    audit_cmd = sub.add_parser("audit", help="show the security audit log, newest first")
    audit_cmd.add_argument("--json", action="store_true")
    audit_cmd.add_argument("--limit", type=int, default=50)
    audit_cmd.set_defaults(func=accounts_cmd.cmd_audit)

    keys = sub.add_parser("keys", help="manage signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, parser_class=Parser)
    klist = ksub.add_parser("list", help="list keys and their states")
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=keys_cmd.cmd_keys_list)
    krotate = ksub.add_parser(
        "rotate",
        help="publish the next key now; it signs after ISSUER_KEY_PUBLISH_AHEAD seconds",
    )
    krotate.add_argument(
        "--now", action="store_true", help="sign with the new key at once (not published ahead)"
    )
    krotate.add_argument("--json", action="store_true")
    krotate.set_defaults(func=keys_cmd.cmd_keys_rotate)
    krevoke = ksub.add_parser("revoke", help="unpublish a key at once")
    krevoke.add_argument("kid")
    krevoke.add_argument("--json", action="store_true")
    krevoke.set_defaults(func=keys_cmd.cmd_keys_revoke)

    drill = sub.add_parser(
        "drill",
        help="rotate and revoke keys under verification load against a running stack",
        description="Planned key rotations and an emergency revocation under live load; "
        "exits 1 when a valid request failed or revocation exceeded its bound.",
    )
    add_drill_arguments(drill)
    drill.set_defaults(func=drill_cmd.cmd_drill)

    seed = sub.add_parser("seed", help="create the demo client and user (idempotent)")
    seed.add_argument("--credentials-file", default="var/demo-credentials.json")
    seed.add_argument("--photos-url", default="http://127.0.0.1:8001")
    seed.add_argument("--contacts-url", default="http://127.0.0.1:8002")
    seed.add_argument(
        "--webapp-url",
        default="http://127.0.0.1:8003",
        help="the web app's base URL (its redirect URIs are URL/callback, URL/signed-out)",
    )
    seed.add_argument("--json", action="store_true")
    seed.set_defaults(func=store_cmd.cmd_seed)
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


FAILURES = {
    **COMMON_FAILURES,
    SQLAlchemyError: (1, lambda exc: f"database error: {type(exc).__name__}"),
}


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    return run_command(parser, protect_kid(sys.argv[1:] if argv is None else argv), FAILURES)


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, build_parser())
