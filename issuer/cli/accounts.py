"""``issuer clients``, ``issuer users`` and ``issuer audit``: accounts and the security log."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from issuer import audit
from issuer.cli.common import (
    load_settings,
    open_accounts,
    print_json,
    read_password_stdin,
    table,
)
from issuer.refresh import RefreshTokenStore
from serving.cli import CLIError
from shared.clock import system_clock
from shared.scopes import parse_scope


def cmd_clients_create(args: argparse.Namespace) -> None:
    scopes = parse_scope(args.scope)  # RFC 6749 §3.3, refused before the store is opened
    accounts = open_accounts(load_settings())
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


def cmd_users_create(args: argparse.Namespace) -> None:
    scopes = parse_scope(args.scope)  # RFC 6749 §3.3, refused before the store is opened
    if not args.password_stdin:
        raise CLIError("pass the password on standard input with --password-stdin")
    password = read_password_stdin()
    accounts = open_accounts(load_settings())
    user = accounts.create_user(
        username=args.username,
        password=password,
        scopes=scopes,
        now=system_clock(),
    )
    sys.stdout.write(f"created user {user.username} (sub user:{user.user_id})\n")


def cmd_users_disable(args: argparse.Namespace, disabled: bool = True) -> None:
    settings = load_settings()
    accounts = open_accounts(settings)
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
    password = read_password_stdin()
    settings = load_settings()
    accounts = open_accounts(settings)
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
    events = audit.AuditLog(open_accounts(load_settings()).engine).recent(args.limit)
    if args.json:
        print_json([e.to_dict() for e in events])
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
    sys.stdout.write(table(headers, rows))
