"""Refresh tokens (RFC 6749 §6, RFC 9700 §4.14): opaque, stored hashed, rotated on every use.

Each token belongs to a family started by one login. Redeeming a token is one conditional
``UPDATE ... WHERE used_at IS NULL``: of two concurrent redemptions exactly one changes the row.
Presenting a token that was already redeemed revokes its whole family (reuse detection).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine, RowMapping

from issuer.accounts import hash_secret
from issuer.db import refresh_tokens
from shared.scopes import format_scope, parse_scope

TOKEN_BYTES = 32  # 256 bits


# Refresh tokens are 256-bit random values like client secrets: the same fast hash serves both.
token_hash = hash_secret


@dataclass(frozen=True)
class RefreshGrant:
    family_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]
    audience: str
    expires_at: float
    family_expires_at: float

    @classmethod
    def from_row(cls, row: RowMapping) -> RefreshGrant:
        return cls(
            family_id=row["family_id"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            scopes=parse_scope(row["scopes"]),
            audience=row["audience"],
            expires_at=row["expires_at"],
            family_expires_at=row["family_expires_at"],
        )


@dataclass(frozen=True)
class Redemption:
    """Outcome of presenting a refresh token."""

    status: str  # "ok", "unknown", "expired", "revoked", "reused", "wrong_client"
    grant: RefreshGrant | None = None
    token: str | None = None  # the successor, when status is "ok"
    scopes: frozenset[str] = frozenset()
    audience: str = ""


class RefreshTokenStore:
    def __init__(self, engine: Engine, *, ttl: int, idle_ttl: int | None = None) -> None:
        self.engine = engine
        self.ttl = ttl  # the family's absolute lifetime, counted from the login
        # Each token's own lifetime: unused this long, the family is dead. Never beyond ``ttl``.
        self.idle_ttl = min(idle_ttl, ttl) if idle_ttl is not None else ttl

    def issue(
        self,
        *,
        client_id: str,
        user_id: str,
        scopes: frozenset[str],
        audience: str,
        now: float,
        family_id: str | None = None,
        family_expires_at: float | None = None,
        conn: Connection | None = None,
    ) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        family_end = family_expires_at if family_expires_at is not None else now + self.ttl
        row = {
            "token_hash": token_hash(token),
            "family_id": family_id or secrets.token_hex(16),
            "client_id": client_id,
            "user_id": user_id,
            "scopes": format_scope(scopes),
            "audience": audience,
            "created_at": now,
            "expires_at": min(now + self.idle_ttl, family_end),
            "family_expires_at": family_end,
            "used_at": None,
            "revoked_at": None,
        }
        if conn is not None:
            conn.execute(refresh_tokens.insert().values(**row))
        else:
            with self.engine.begin() as c:
                c.execute(refresh_tokens.insert().values(**row))
        return token

    def rotate(
        self,
        token: str,
        *,
        client_id: str,
        now: float,
        narrow: Callable[[RefreshGrant, Connection], tuple[frozenset[str], str]],
    ) -> Redemption:
        """Redeem ``token`` and issue its successor in one transaction.

        ``narrow`` turns the stored grant into the scopes and audience of the new tokens,
        reading through the transaction's own connection (asking the pool for a second one while
        holding the write lock deadlocks once every pooled connection waits on that lock). If it
        raises, the transaction rolls back and the presented token stays usable. On success the
        redemption carries the new refresh token and the narrowed scopes and audience.
        """
        digest = token_hash(token)
        with self.engine.begin() as conn:
            # Write first: the conditional UPDATE is the only arbiter between concurrent
            # redemptions (and in SQLite it takes the write lock before any read happens).
            claimed = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == digest)
                .where(refresh_tokens.c.client_id == client_id)
                .where(refresh_tokens.c.used_at.is_(None))
                .where(refresh_tokens.c.revoked_at.is_(None))
                .where(refresh_tokens.c.expires_at > now)
                .values(used_at=now)
            ).rowcount
            row = (
                conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest))
                .mappings()
                .first()
            )
            if row is None:
                return Redemption("unknown")
            grant = RefreshGrant.from_row(row)
            if claimed != 1:
                if row["client_id"] != client_id:
                    # RFC 6749 §6: bound to its client. Not a replay by the owner: the family
                    # is left alone.
                    return Redemption("wrong_client", grant)
                if row["revoked_at"] is not None:
                    return Redemption("revoked", grant)
                if row["used_at"] is not None:
                    self._revoke_family(conn, grant.family_id, now)
                    return Redemption("reused", grant)
                return Redemption("expired", grant)
            scopes, audience = narrow(grant, conn)
            new_token = self.issue(
                client_id=client_id,
                user_id=grant.user_id,
                scopes=scopes,
                audience=audience,
                now=now,
                family_id=grant.family_id,
                family_expires_at=grant.family_expires_at,
                conn=conn,
            )
        return Redemption("ok", grant, new_token, scopes, audience)

    def _revoke_family(self, conn: Connection, family_id: str, now: float) -> None:
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id)
            .where(refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoke_family_of(self, token: str, *, client_id: str, now: float) -> bool:
        digest = token_hash(token)
        with self.engine.begin() as conn:
            row = conn.execute(
                select(refresh_tokens.c.family_id, refresh_tokens.c.client_id).where(
                    refresh_tokens.c.token_hash == digest
                )
            ).first()
            if row is None or row.client_id != client_id:
                return False
            self._revoke_family(conn, row.family_id, now)
        return True

    def revoke_user(self, user_id: str, now: float) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.user_id == user_id)
                .where(refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
