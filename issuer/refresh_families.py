"""Ending refresh-token families, and the checks a family's first token runs against an ending
that raced it: revocation of a family, of a session's families, of a user's tokens (each in the
caller's transaction, rows locked in ``token_hash`` order), and whether the authorization code a
family was started from has been replayed. Split from issuer/refresh.py (rotation and replay
grace), which uses these.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.engine import Connection

from issuer.db import authorization_codes, refresh_tokens
from issuer.events import SecurityEvents


def revoke_user(conn: Connection, user_id: str, now: float) -> int:
    """Revoke every refresh token of ``user_id`` in the caller's transaction; returns how many.
    (The user's event, disabled or password changed, is the caller's: issuer/user_admin.py.)"""
    return revoke_where(conn, refresh_tokens.c.user_id == user_id, now)


def revoke_family(
    conn: Connection,
    family_id: str,
    now: float,
    *,
    events: SecurityEvents | None = None,
    reason: str = "refresh family ended",
) -> None:
    """Revoke every token of the family, inside the caller's transaction (rows locked in
    ``token_hash`` order on PostgreSQL, like every path that locks several of them), and record
    the family's end for the resource services (its access tokens carry ``fid``)."""
    revoke_where(conn, refresh_tokens.c.family_id == family_id, now)
    if events is not None:
        events.family_ended(conn, family_id, reason=reason)


def revoke_where(conn: Connection, where: ColumnElement[bool], now: float) -> int:
    """Mark revoked every unrevoked token ``where`` selects (a family, a session's families, a
    user's), rows locked in ``token_hash`` order first. Returns how many."""
    lock_in_order(conn, where)
    return conn.execute(
        update(refresh_tokens)
        .where(where)
        .where(refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


def family_start_revoked(conn: Connection, family_id: str) -> bool:
    """Was the authorization code whose redemption chose ``family_id`` presented again?

    Reads (on PostgreSQL: locks) the code's row, so this check and a concurrent replay's
    revocation of the family (issuer/codes.py, which locks the same row first) are serialised:
    either the replay's mark is seen here, or the replay's family revocation sees the token this
    transaction inserted. SQLite serialises writers anyway.
    """
    query = select(authorization_codes.c.replayed_at).where(
        authorization_codes.c.family_id == family_id
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return any(at is not None for at in conn.execute(query).scalars().all())


def lock_in_order(conn: Connection, where: ColumnElement[bool]) -> None:
    """PostgreSQL: lock the rows ``where`` selects in ``token_hash`` order (``FOR UPDATE``), so
    two transactions that each lock several refresh-token rows (a replay, a family or user
    revocation) take them in the same order and cannot deadlock. SQLite has no row locks (the
    transaction's write lock serialises writers): there it does nothing."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(refresh_tokens.c.token_hash)
            .where(where)
            .order_by(refresh_tokens.c.token_hash)
            .with_for_update()
        ).all()
