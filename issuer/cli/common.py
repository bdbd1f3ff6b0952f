"""Helpers the issuer's commands share: the settings, the stores of an existing store, and
output formatting."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from issuer.accounts import AccountStore
from issuer.db import open_store
from issuer.events import security_events
from issuer.keys import KeyAdmin, open_key_repository
from issuer.settings import IssuerSettings
from serving.cli import CLIError
from shared.clock import system_clock


def load_settings() -> IssuerSettings:
    return IssuerSettings.from_env()


def open_accounts(settings: IssuerSettings) -> AccountStore:
    """The accounts of an existing, migrated store (refused otherwise: see ``open_store``)."""
    return AccountStore(open_store(settings.database_url, pool_size=settings.database_pool_size))


def open_key_admin(settings: IssuerSettings) -> KeyAdmin:
    """Key administration on an existing store: no secret is generated and no key created
    (``keys rotate`` and the revocation of the signing key make theirs on purpose)."""
    engine = open_store(settings.database_url, pool_size=settings.database_pool_size)
    repo = open_key_repository(settings, engine, system_clock(), create=False)
    return KeyAdmin(repo, events=security_events(engine, settings))


def when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = at - now
    if abs(delta) < 1:
        return f"{stamp} (now)"
    if delta > 0:
        return f"{stamp} (in {duration(delta)})"
    return f"{stamp} ({duration(-delta)} ago)"


def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell (``user:<32 hex>`` subjects, IPv6 addresses, long
    client ids), two spaces apart; the last column is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    lines = []
    for cells in [headers, *rows]:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip() + "\n")
    return "".join(lines)


def read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CLIError("no password on standard input")
    return password
