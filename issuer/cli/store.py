"""``issuer serve``, ``issuer init`` and ``issuer seed``: the commands that run the server or
make its store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from issuer.cli.common import (
    load_settings,
    open_accounts,
    print_json,
)
from issuer.db import create_store, describe_database, head_revision
from issuer.keys import KeySealer, find_secret, prepare_keys
from issuer.seed import seed_demo, walkthrough
from serving.cli import configure_logging, serve_from_args
from shared.clock import system_clock


def cmd_serve(args: argparse.Namespace) -> None:
    from issuer.container import build_issuer

    settings = load_settings()
    configure_logging(settings.log_level)
    # Fail fast with one line (bad secret, unreachable database) before uvicorn starts.
    issuer = build_issuer(settings)
    issuer.keyring.repo.engine.dispose()
    serve_from_args(
        "issuer.asgi:app",
        args,
        log_level=settings.log_level,
        limits=settings.connections,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
    )


def cmd_init(args: argparse.Namespace) -> None:
    """Create the store (SQLite file or schema, migrated to head), the key-encryption secret
    file when none is configured, and the first signing key; say what was made. Idempotent."""
    settings = load_settings()
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
        print_json(
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


def cmd_seed(args: argparse.Namespace) -> None:
    settings = load_settings()
    accounts = open_accounts(settings)
    creds = seed_demo(
        accounts, Path(args.credentials_file), system_clock(), webapp_url=args.webapp_url
    )
    if args.json:
        sys.stdout.write(json.dumps(creds) + "\n")
        return
    sys.stdout.write(walkthrough(creds, settings.issuer_url, args.photos_url, args.contacts_url))
