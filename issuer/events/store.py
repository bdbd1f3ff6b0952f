"""The stored stream of security events (migration 0007): recorded inside the transaction of
the revocation they describe, read in ``seq`` order by every replica's broadcaster, purged once
the tokens they cover have expired.

Ordering. A reader that has seen ``seq`` N asks for ``seq > N``; it must never find N+1 committed
after it read N+2. SQLite serialises writers (the inserting transaction holds the write lock until
it commits), so ids are committed in order. PostgreSQL hands out ids from a sequence as inserts run
and commits them in any order: there every insert first takes a transaction-scoped advisory lock
(held to the commit), so event inserts, and so their commits, run one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection, Engine

from issuer.db import security_events
from shared.clock import Clock, system_clock

# Key for pg_advisory_xact_lock: serialises event inserts ("KHEVENTS").
_EVENTS_LOCK_KEY = 0x4B484556454E5453
# Rows stay this long past the latest ``exp`` they cover (receivers add their leeway).
EXPIRY_MARGIN = 300.0
# At most this many events per read: a reader that is far behind catches up in pages.
PAGE = 500


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    claims: Mapping[str, Any]


class EventStore:
    """Rows of ``security_events``. ``notify`` is called after each in-process record (the
    broadcaster's wake-up); the transaction may not have committed yet, so the broadcaster
    looks again shortly if it finds nothing."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = system_clock,
        margin: float = EXPIRY_MARGIN,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.margin = margin
        self.notify: Callable[[], None] = lambda: None

    def record(self, conn: Connection, claims: Mapping[str, Any], *, expires: float) -> None:
        """Store the SET claims ``claims`` in the caller's transaction (``conn``), kept until
        ``expires`` (the latest ``exp`` they cover) plus the margin."""
        self.lock(conn)
        conn.execute(
            security_events.insert().values(
                jti=claims["jti"],
                created_at=self.clock(),
                expires_at=expires + self.margin,
                claims=json.dumps(claims, separators=(",", ":"), sort_keys=True),
            )
        )
        self.notify()

    @staticmethod
    def lock(conn: Connection) -> None:
        """PostgreSQL: take the event-insert lock now, for the rest of ``conn``'s transaction (a
        caller that writes other rows before its event takes it first, so that every transaction
        takes it before, never after, a row lock another event writer may hold). Taken again by
        :meth:`record`, which costs nothing then. SQLite: nothing (writers are serialised)."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENTS_LOCK_KEY})

    def record_now(self, claims: Mapping[str, Any], *, expires: float) -> None:
        """:meth:`record` in a transaction of its own."""
        with self.engine.begin() as conn:
            self.record(conn, claims, expires=expires)

    def after(self, seq: int, *, limit: int = PAGE) -> list[StoredEvent]:
        """Unexpired events with ``seq`` above ``seq``, oldest first, at most ``limit``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(security_events.c.seq, security_events.c.claims)
                .where(security_events.c.seq > seq)
                .where(security_events.c.expires_at >= self.clock())
                .order_by(security_events.c.seq)
                .limit(limit)
            ).all()
        return [StoredEvent(row.seq, json.loads(row.claims)) for row in rows]

    def newest(self) -> int:
        """The highest ``seq`` stored (0: none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(security_events.c.seq))).scalar() or 0)

    def purge(self, now: float | None = None) -> int:
        """Delete the events past their keeping time; returns how many."""
        at = self.clock() if now is None else now
        with self.engine.begin() as conn:
            return conn.execute(
                delete(security_events).where(security_events.c.expires_at < at)
            ).rowcount
