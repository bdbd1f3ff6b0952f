"""Access tokens revoked before their ``exp``, by ``jti``.

Access tokens are JWTs that resource services verify offline, so nothing here reaches them: a
revoked token still works there until it expires (keep ``ISSUER_ACCESS_TOKEN_TTL`` short). The
issuer's own endpoints consult this list: ``/introspect`` reports such a token inactive and
``/userinfo`` refuses it. Today one thing revokes access tokens: an authorization code presented
a second time revokes what its first redemption issued (RFC 6749 §4.1.2, issuer/codes.py).

A row lives until the token would have expired anyway; expired rows are deleted now and then.
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from issuer.db import revoked_access_tokens
from shared.clock import Clock, system_clock

MAX_JTI = 64
PURGE_ONE_IN = 100  # a revocation purges expired rows with this probability's inverse


class RevokedAccessTokens:
    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock  # decides which rows are expired when purging

    def revoke(self, jti: str, expires_at: float, *, conn: Connection | None = None) -> None:
        """Record ``jti`` as revoked until ``expires_at`` (through ``conn`` when the caller is
        inside a transaction). Revoking it again changes nothing."""
        if conn is not None:
            self._revoke(conn, jti, expires_at)
            return
        try:
            with self.engine.begin() as own:
                self._revoke(own, jti, expires_at)
        except IntegrityError:  # a concurrent revocation of the same jti won: it is revoked
            pass

    def _revoke(self, conn: Connection, jti: str, expires_at: float) -> None:
        known = conn.execute(
            select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
        ).first()
        if known is None:
            conn.execute(revoked_access_tokens.insert().values(jti=jti, expires_at=expires_at))
        if secrets.randbelow(PURGE_ONE_IN) == 0:
            self._purge(conn, now=self.clock())

    def is_revoked(self, jti: str) -> bool:
        if not jti or len(jti) > MAX_JTI:
            return False
        with self.engine.connect() as conn:
            row = conn.execute(
                select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
            ).first()
        return row is not None

    def purge(self, now: float) -> int:
        """Delete the rows of tokens expired before ``now``; returns how many."""
        with self.engine.begin() as conn:
            return self._purge(conn, now=now)

    @staticmethod
    def _purge(conn: Connection, *, now: float) -> int:
        return conn.execute(
            delete(revoked_access_tokens).where(revoked_access_tokens.c.expires_at < now)
        ).rowcount
