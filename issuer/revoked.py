"""Access tokens revoked before their ``exp``, by ``jti``.

Access tokens are JWTs that resource services verify offline: this list is the issuer's own.
Its endpoints consult it: ``/introspect`` reports such a token inactive and ``/userinfo`` refuses
it. The resource services learn of a revocation through the security event recorded with it
(issuer/events/, ``GET /events``). Two things revoke access tokens: ``POST /revoke`` of an access
token by the client it was issued to (issuer/introspection.py), and an authorization code
presented a second time, which revokes what its first redemption issued (RFC 6749 §4.1.2,
issuer/codes.py).

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

    def revoke(self, jti: str, expires_at: float, *, conn: Connection | None = None) -> bool:
        """Record ``jti`` as revoked until ``expires_at`` (through ``conn`` when the caller is
        inside a transaction). Revoking it again changes nothing. Returns whether this call
        added it (False: it was revoked already). Inside a caller's transaction, a concurrent
        revocation of the same jti makes the insert fail (``IntegrityError``): the caller's to
        handle (it is revoked either way)."""
        if conn is not None:
            return self._revoke(conn, jti, expires_at)
        try:
            with self.engine.begin() as own:
                return self._revoke(own, jti, expires_at)
        except IntegrityError:  # a concurrent revocation of the same jti won: it is revoked
            return False

    def _revoke(self, conn: Connection, jti: str, expires_at: float) -> bool:
        known = conn.execute(
            select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
        ).first()
        if known is None:
            conn.execute(revoked_access_tokens.insert().values(jti=jti, expires_at=expires_at))
        if secrets.randbelow(PURGE_ONE_IN) == 0:
            self._purge(conn, now=self.clock())
        return known is None

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
