"""``issuer clients``, ``issuer users`` and ``issuer audit``: accounts and the security log."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from issuer import audit
from issuer.accounts import AccountStore, User
from issuer.cli.common import (
    load_settings,
    open_accounts,
    print_json,
    read_password_stdin,
    table,
)
from issuer.consents import ConsentStore
from issuer.events import security_events
from issuer.settings import IssuerSettings
from issuer.user_admin import UserAdmin
from serving.cli import CLIError
from shared.clock import system_clock
from shared.scopes import parse_scope


def cmd_clients_create(args: argparse.Namespace) -> None:
    scopes = parse_scope(args.scope)  # RFC 6749 §3.3, refused before the store is opened
    grants = args.grant or (["authorization_code"] if args.public else ["client_credentials"])
    accounts = open_accounts(load_settings())
    client, secret = accounts.create_client(
        name=args.name,
        scopes=scopes,
        audiences=args.audience,
        grant_types=grants,
        now=system_clock(),
        client_id=args.client_id,
        redirect_uris=args.redirect_uri,
        post_logout_redirect_uris=args.post_logout_redirect_uri,
        public=args.public,
        first_party=args.first_party,
        dpop_bound_access_tokens=args.dpop,
    )
    result: dict[str, object] = {"client_id": client.client_id}
    if secret is not None:
        result["client_secret"] = secret
    result.update(
        {
            "name": client.name,
            "scope": " ".join(sorted(client.scopes)),
            "audiences": list(client.audiences),
            "grant_types": sorted(client.grant_types),
            "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "first_party": client.first_party,
            "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        }
    )
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif secret is None:
        sys.stdout.write(
            f"client_id:     {client.client_id}\n"
            "A public client: no secret (token_endpoint_auth_method none).\n"
        )
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


def _user_admin(settings: IssuerSettings) -> UserAdmin:
    accounts = open_accounts(settings)
    return UserAdmin(accounts, events=security_events(accounts.engine, settings))


def cmd_users_disable(args: argparse.Namespace, disabled: bool = True) -> None:
    """Disable: refresh tokens revoked, sign-in sessions ended, the event pushed to the
    resource services (issuer/user_admin.py, shared with the admin API)."""
    change = _user_admin(load_settings()).set_disabled(args.username, disabled, by="the CLI")
    sys.stdout.write(f"user {change.user.username} {'disabled' if disabled else 'enabled'}\n")


def cmd_users_set_password(args: argparse.Namespace) -> None:
    if not args.password_stdin:
        raise CLIError("pass the new password on standard input with --password-stdin")
    password = read_password_stdin()
    change = _user_admin(load_settings()).set_password(args.username, password, by="the CLI")
    sys.stdout.write(
        f"password changed for {change.user.username}; their refresh tokens are revoked\n"
    )


def _user(accounts: AccountStore, username: str) -> User:
    user = accounts.get_user(username)
    if user is None:
        raise CLIError(f"no user {username!r}")
    return user


def cmd_users_consents(args: argparse.Namespace) -> None:
    accounts = open_accounts(load_settings())
    user = _user(accounts, args.username)
    granted = ConsentStore(accounts.engine).list(user.user_id)
    if args.json:
        print_json(
            [
                {
                    "client_id": c.client_id,
                    "scope": " ".join(sorted(c.scopes)),
                    "audiences": sorted(c.audiences),
                    "granted_at": c.granted_at,
                }
                for c in granted
            ]
        )
        return
    if not granted:
        sys.stdout.write(f"user {user.username} has approved no client\n")
        return
    rows = [
        (
            c.client_id,
            datetime.fromtimestamp(c.granted_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            " ".join(sorted(c.audiences)),
            " ".join(sorted(c.scopes)) or "-",
        )
        for c in granted
    ]
    sys.stdout.write(table(("CLIENT", "GRANTED (UTC)", "AUDIENCES", "SCOPE"), rows))


def cmd_users_revoke_consent(args: argparse.Namespace) -> None:
    accounts = open_accounts(load_settings())
    user = _user(accounts, args.username)
    if not ConsentStore(accounts.engine).revoke(user.user_id, args.client_id):
        raise CLIError(f"user {user.username} has no consent for client {args.client_id!r}")
    sys.stdout.write(
        f"consent of {user.username} for {args.client_id} revoked; "
        "they are asked again at the next sign-in\n"
    )


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
