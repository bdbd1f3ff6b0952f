"""The issuer's database in a scenario: a SQLite file in the stack's directory, or a throwaway
PostgreSQL server (the tests' tests/support/postgres.py, started from Debian's binaries) pinned
to the server CPUs like the servers, so its work counts where SQLite's does. Also the refresh
tokens a load starts from (minted with the issuer's own RefreshTokenStore, what a password login
stores) and the database's count of redeemed and revoked ones."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select

from bench.harness.chains import Ledger
from bench.harness.config import BenchError, Config
from bench.harness.cpu import process_tree
from issuer.db import open_store, refresh_tokens
from issuer.refresh import RefreshTokenStore
from shared.scopes import parse_scope
from tests.support.postgres import PostgresServer, PostgresUnavailable, find_bindir

# A seed's lifetime: far longer than a run, far shorter than the issuer's default 30 days.
SEED_TTL = 3600


def postgres_missing() -> str | None:
    """Why no PostgreSQL server can be started here (None: it can)."""
    if find_bindir() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    return None


def pin_tree(cfg: Config, pid: int) -> None:
    """Moves a running process and its children to the server CPUs (``taskset``); the children
    a PostgreSQL postmaster forks later (a backend per connection) inherit its CPUs."""
    if not cfg.pinned:
        return
    for p in process_tree(pid):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cfg.server_cpus, str(p)],
            capture_output=True,
            check=False,
            timeout=10,
        )


@dataclass(frozen=True)
class Postgres:
    url: str  # of an empty database
    pid: int  # the postmaster's (its backends are its children)


@contextmanager
def postgres(cfg: Config) -> Iterator[Postgres]:
    """A throwaway PostgreSQL server on the server CPUs."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        raise BenchError(str(exc)) from exc
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        raise BenchError(f"PostgreSQL did not start: {exc}") from exc
    try:
        pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
        pin_tree(cfg, pid)
        yield Postgres(server.url, pid)
    finally:
        server.stop()


def mint_refresh_tokens(
    database_url: str, *, client_id: str, user_id: str, audience: str, scope: str, count: int
) -> list[str]:
    """``count`` fresh refresh tokens, each the start of a family of its own: what ``count``
    password logins would store (issuer/grants.py calls the same ``issue``), without their
    argon2 checks, which run a few a second by design. One transaction."""
    engine = open_store(database_url, pool_size=1)
    try:
        store = RefreshTokenStore(engine, ttl=SEED_TTL, idle_ttl=SEED_TTL)
        now = time.time()
        scopes = parse_scope(scope)
        with engine.begin() as conn:
            return [
                store.issue(
                    client_id=client_id,
                    user_id=user_id,
                    scopes=scopes,
                    audience=audience,
                    now=now,
                    conn=conn,
                )
                for _ in range(count)
            ]
    finally:
        engine.dispose()


def ledger(database_url: str, client_id: str) -> Ledger:
    """How many of the client's refresh tokens the database has redeemed and revoked."""
    engine = open_store(database_url, pool_size=1)
    try:
        with engine.connect() as conn:

            def count(where: ColumnElement[bool]) -> int:
                query = select(func.count()).select_from(refresh_tokens)
                query = query.where(refresh_tokens.c.client_id == client_id, where)
                return int(conn.execute(query).scalar_one())

            return Ledger(
                count(refresh_tokens.c.used_at.is_not(None)),
                count(refresh_tokens.c.revoked_at.is_not(None)),
            )
    finally:
        engine.dispose()
