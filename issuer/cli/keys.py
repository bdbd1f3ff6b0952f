"""``issuer keys list|rotate|revoke``: the signing-key schedule by hand."""

from __future__ import annotations

import argparse
import sys

from issuer.cli.common import (
    load_settings,
    open_key_admin,
    print_json,
    when,
)


def cmd_keys_list(args: argparse.Namespace) -> None:
    admin = open_key_admin(load_settings())
    keys = admin.list()
    if args.json:
        print_json(keys)
        return
    now = admin.clock()
    sys.stdout.write(f"{'KID':<45} {'STATE':<10} {'SIGNING':<8} {'ACTIVATES':<32} LEAVES JWKS\n")
    for key in keys:
        leaves = key["revoked_at"] if key["revoked_at"] is not None else key["remove_at"]
        sys.stdout.write(
            f"{key['kid']:<45} {key['state']:<10} {'yes' if key['signing'] else '':<8} "
            f"{when(key['activate_at'], now):<32} {when(leaves, now)}\n"
        )


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    record = open_key_admin(load_settings()).rotate(now=args.now)
    if args.json:
        print_json(record)
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
        f"{when(record['activate_at'], now)}; {previous} signs until then and stays "
        "published until its tokens expire (use --now to switch at once)\n"
    )


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    """Revoking a key that is already revoked changes nothing, writes no audit event, says
    "already revoked" and exits 0 (the key is in the state asked for; scripts may retry)."""
    record = open_key_admin(load_settings()).revoke(args.kid)
    if args.json:
        print_json(record)
        return
    if record["already_revoked"]:
        sys.stdout.write(
            f"already revoked: {record['kid']} was revoked "
            f"{when(record['revoked_at'], record['now'])}; nothing changed\n"
        )
    else:
        sys.stdout.write(f"revoked: {record['kid']} is no longer published\n")
    if record["signing_kid"]:
        sys.stdout.write(f"signing key: {record['signing_kid']}\n")
