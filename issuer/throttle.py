"""Failed-authentication throttling, kept in the database so it holds across replicas.

Every failed client authentication or user login appends one row per key it concerns
(``client:<client_id>``, ``user:<username>``, ``address:<peer>``). A key with ``limit`` or more
failures inside the sliding ``window`` is blocked: the endpoint answers 429 ``slow_down`` with
``Retry-After`` = the seconds until enough failures age out, without checking the credentials.
While blocked nothing more is recorded, so a blocked key frees up after at most one window.

Keys are stored as SHA-256 hashes: the table never holds a username (or whatever was typed in
its place) in clear. Unknown client ids and usernames are throttled exactly like known ones, so
the 429 says nothing about whether an account exists.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from issuer.db import auth_failures


def key_hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ThrottleKey:
    kind: str  # "client", "user" or "address"
    value: str
    limit: int

    @property
    def digest(self) -> str:
        return key_hash(self.kind, self.value)


@dataclass(frozen=True)
class Block:
    key: ThrottleKey
    retry_after: int


class Throttle:
    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int,
        max_failures_per_address: int,
        window: int,
    ) -> None:
        self.engine = engine
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.window = window

    # -- keys ---------------------------------------------------------------------------------

    def client(self, client_id: str) -> ThrottleKey:
        return ThrottleKey("client", client_id, self.max_failures)

    def user(self, username: str) -> ThrottleKey:
        return ThrottleKey("user", username, self.max_failures)

    def address(self, address: str) -> ThrottleKey:
        return ThrottleKey("address", address, self.max_failures_per_address)

    # -- queries ------------------------------------------------------------------------------

    def blocked(self, keys: list[ThrottleKey], now: float) -> Block | None:
        """The first of ``keys`` that is blocked at ``now`` (the longest wait wins), or None."""
        if not keys:
            return None
        cutoff = now - self.window
        digests = {k.digest: k for k in keys}
        worst: Block | None = None
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(auth_failures.c.key_hash, func.count())
                .where(auth_failures.c.key_hash.in_(list(digests)))
                .where(auth_failures.c.at > cutoff)
                .group_by(auth_failures.c.key_hash)
            ).all()
            for digest, count in rows:
                key = digests[digest]
                if count < key.limit:
                    continue
                # Blocked until the failure that keeps the count at the limit ages out.
                times = (
                    conn.execute(
                        select(auth_failures.c.at)
                        .where(auth_failures.c.key_hash == digest)
                        .where(auth_failures.c.at > cutoff)
                        .order_by(auth_failures.c.at.desc())
                        .offset(key.limit - 1)
                        .limit(1)
                    )
                    .scalars()
                    .all()
                )
                until = (times[0] if times else now) + self.window
                retry = max(1, math.ceil(until - now))
                if worst is None or retry > worst.retry_after:
                    worst = Block(key, retry)
        return worst

    def record_failure(self, keys: list[ThrottleKey], now: float) -> list[ThrottleKey]:
        """Count one failure against each key; returns the keys this failure just blocked."""
        cutoff = now - self.window
        with self.engine.begin() as conn:
            # Old rows are useless: drop them as we go (indexed on ``at``).
            conn.execute(delete(auth_failures).where(auth_failures.c.at <= cutoff))
            conn.execute(auth_failures.insert(), [{"key_hash": k.digest, "at": now} for k in keys])
            newly_blocked = []
            for key in keys:
                count = conn.execute(
                    select(func.count())
                    .select_from(auth_failures)
                    .where(auth_failures.c.key_hash == key.digest)
                    .where(auth_failures.c.at > cutoff)
                ).scalar_one()
                if count == key.limit:
                    newly_blocked.append(key)
        return newly_blocked
