"""Replay grace (``ISSUER_REFRESH_REPLAY_GRACE``, seconds; 0 turns it off). A refresh whose answer
was lost after its rotation was committed (a replica killed between its commit and its answer,
HAProxy resending the request to the other replica; a client retrying after a timeout) presents
a token that is already redeemed. Without a grace that is reuse, and the user is logged out by
an infrastructure failure. RFC 9700 §4.14.2 names the trade-off; Okta ("grace period for token
rotation") and Auth0 ("reuse interval") accept such a replay for a few seconds. Here a replay is
honoured when the token is the presenting client's, not revoked, not expired, was redeemed at
most the grace ago, and its successor (the row whose ``parent_hash`` is the presented token's
hash) has been neither used nor revoked. Then, in one transaction, that successor is *spent*
(``used_at`` set: it was never delivered, or someone else holds it), the presented token's
``used_at`` moves to now, and a new successor is issued. Every other case is reuse, as before.

What that costs: within the window, a thief holding the just-rotated token can take the chain
over instead of ending it, but only while the owner has not used its successor (a used successor
makes the replay reuse). The owner's next refresh then presents a spent token, which is reuse and
ends the family, the thief's new tokens included. A spent successor has no successor of its own,
so it never qualifies for the grace. Tokens rotated before migration 0004 have no recorded
successor: their replays are reuse.

Concurrency. Concurrent replays of one token end as if they had come one after the other: each
is honoured in turn, and only the last one's successor stays usable (exactly one live chain).
On SQLite the failed claim already holds the write lock, so they are serialised. On PostgreSQL
the replay locks the presented row and its successor (``FOR UPDATE``, in ``token_hash`` order)
and moves the presented row's ``used_at`` with an ``UPDATE ... WHERE used_at = <the value read>``:
of two replays exactly one changes the row; the other, already holding the lock when it
re-reads, decides again on the winner's state (the winner's successor is the one it spends).
Every path that locks several rows of a family locks them in ``token_hash`` order, so a replay
and a family revocation cannot deadlock.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, RowMapping

from issuer.db import refresh_tokens
from issuer.refresh_families import lock_in_order

# Decisions a replay may take (see the module docstring): the second one runs holding the lock
# on the presented row, where no other transaction can change it, so it cannot lose again.
REPLAY_ATTEMPTS = 2


def replay_within_grace(conn: Connection, row: RowMapping, *, now: float, grace: float) -> bool:
    """Honour a replay of the redeemed token ``row`` (see the module docstring): spend its
    unused successor and move its ``used_at`` to ``now``. False: it is reuse."""
    digest = row["token_hash"]
    for _ in range(REPLAY_ATTEMPTS):
        used_at = row["used_at"]
        if (
            grace <= 0
            or used_at is None
            or row["revoked_at"] is not None
            or row["expires_at"] <= now  # an expired token or family stays refused
            or now - used_at > grace
        ):
            return False
        successors = (
            conn.execute(
                select(refresh_tokens.c.token_hash)
                .where(refresh_tokens.c.parent_hash == digest)
                .where(refresh_tokens.c.used_at.is_(None))
                .where(refresh_tokens.c.revoked_at.is_(None))
            )
            .scalars()
            .all()
        )
        if len(successors) != 1:  # used (the owner has moved on) or revoked, or pre-0004
            return False
        successor = successors[0]
        lock_in_order(conn, refresh_tokens.c.token_hash.in_([digest, successor]))
        # The arbiter between concurrent replays: exactly one moves ``used_at`` from the
        # value it read.
        moved = conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == digest)
            .where(refresh_tokens.c.used_at == used_at)
            .where(refresh_tokens.c.revoked_at.is_(None))
            .values(used_at=now)
        ).rowcount
        if moved == 1:
            # Conditional too: a successor the owner redeemed meanwhile makes this reuse.
            spent = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == successor)
                .where(refresh_tokens.c.used_at.is_(None))
                .where(refresh_tokens.c.revoked_at.is_(None))
                .values(used_at=now)
            ).rowcount
            return bool(spent == 1)
        # Another replay won: decide again on its state (we hold the row's lock now).
        again = (
            conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest))
            .mappings()
            .first()
        )
        assert again is not None  # it was read above, and nothing deletes refresh-token rows
        row = again
    return False
