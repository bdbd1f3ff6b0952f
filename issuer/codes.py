"""Authorization codes (RFC 6749 §4.1.2, RFC 7636, OAuth 2.1 §4.1): 256 random bits, single
use, short-lived (``ISSUER_CODE_TTL``, default 60 s), bound to the client, redirect URI, PKCE
challenge, scopes, audience, nonce and issuer session. Stored only as their SHA-256.

Redemption is one conditional ``UPDATE ... WHERE redeemed_at IS NULL AND expires_at > now``: of
two concurrent redemptions exactly one changes the row. The caller decides what the redemption
will issue (the refresh-token family id, the access token's ``jti`` and expiry) *before* it signs
anything, and the UPDATE records them with the claim. A code presented again then revokes them
(RFC 6749 §4.1.2: "SHOULD revoke (when possible) all tokens previously issued based on that
authorization code"), even when the replay races the first redemption:

- the access token's ``jti`` goes into ``revoked_access_tokens`` (issuer/revoked.py), which
  introspection and /userinfo consult whenever the token is presented;
- the refresh family's tokens are revoked, and ``replayed_at`` is set on the code, under the code
  row's lock: :func:`issuer.refresh.family_start_revoked` makes a family's first token, inserted
  after that, born revoked (the first redemption's INSERT and the replay are serialised on the
  code row, so neither misses the other).

The caller checks client, redirect URI and PKCE verifier after ``redeem``; a failed check still
burns the code. RFC 9700 §4.5.3 (PKCE downgrade) and OAuth 2.1 §4.1.3 ask only that such a
request fail; a code whose verifier was wrong is one an attacker may hold, so spending it is the
safe side (the legitimate client starts the flow again).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from issuer.db import authorization_codes
from issuer.events import SecurityEvents
from issuer.refresh_families import revoke_family
from issuer.revoked import RevokedAccessTokens
from shared.errors import InvalidGrant
from shared.scopes import format_scope, parse_scope

CODE_BYTES = 32  # 256 bits
MAX_CODE = 128  # longer than any code this module makes: not looked up
# Spent and expired codes are kept this long past their expiry (a late replay still revokes),
# then deleted now and then by ``issue``.
KEEP_AFTER_EXPIRY = 86400.0
PURGE_ONE_IN = 100

_INVALID = "the authorization code is invalid, expired or already used"


class CodeReplayed(InvalidGrant):
    """A redeemed code presented again (what its first redemption issued is now revoked): an
    ``invalid_grant`` like any other, distinguishable so the caller can audit it. Carries the
    code's client and user (for the audit log only, never the response)."""

    def __init__(self, description: str, *, client_id: str, user_id: str) -> None:
        super().__init__(description)
        self.client_id = client_id
        self.user_id = user_id


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    code_challenge: str  # S256 (the only method accepted)
    user_id: str
    scopes: frozenset[str]
    audience: str
    nonce: str | None
    sid: str  # the issuer session (issuer/sessions.py) the user signed in with
    auth_time: float
    expires_at: float

    @classmethod
    def from_row(cls, row: Any) -> AuthorizationCode:
        return cls(
            client_id=row["client_id"],
            redirect_uri=row["redirect_uri"],
            code_challenge=row["code_challenge"],
            user_id=row["user_id"],
            scopes=parse_scope(row["scopes"]),
            audience=row["audience"],
            nonce=row["nonce"],
            sid=row["sid"],
            auth_time=row["auth_time"],
            expires_at=row["expires_at"],
        )


class CodeStore:
    def __init__(
        self,
        engine: Engine,
        *,
        ttl: int = 60,
        revoked: RevokedAccessTokens | None = None,
        events: SecurityEvents | None = None,
    ) -> None:
        if not 1 <= ttl <= 600:
            raise ValueError("the code lifetime must be 1-600 seconds")
        self.engine = engine
        self.ttl = ttl
        self.revoked = revoked if revoked is not None else RevokedAccessTokens(engine)
        self.events = events  # what a replay revokes is pushed to resource services too

    def issue(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        user_id: str,
        scopes: Iterable[str],
        audience: str,
        nonce: str | None,
        sid: str,
        auth_time: float,
        now: float,
    ) -> str:
        """A new code for these terms, valid ``ttl`` seconds from ``now``."""
        code = secrets.token_urlsafe(CODE_BYTES)
        with self.engine.begin() as conn:
            conn.execute(
                authorization_codes.insert().values(
                    code_hash=code_hash(code),
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    code_challenge=code_challenge,
                    user_id=user_id,
                    scopes=format_scope(frozenset(scopes)),
                    audience=audience,
                    nonce=nonce,
                    sid=sid,
                    auth_time=auth_time,
                    created_at=now,
                    expires_at=now + self.ttl,
                )
            )
            if secrets.randbelow(PURGE_ONE_IN) == 0:
                conn.execute(
                    delete(authorization_codes).where(
                        authorization_codes.c.expires_at < now - KEEP_AFTER_EXPIRY
                    )
                )
        return code

    def redeem(
        self,
        code: str,
        *,
        now: float,
        family_id: str | None,
        access_jti: str,
        access_expires_at: float,
    ) -> AuthorizationCode:
        """Spend ``code``, recording what its redemption will issue; its terms come back.

        Raises :class:`InvalidGrant` for an unknown or expired code, and its subclass
        :class:`CodeReplayed` for one presented again, after revoking what the first redemption
        recorded (the module docstring).
        """
        if not code or len(code) > MAX_CODE:
            raise InvalidGrant(_INVALID)
        digest = code_hash(code)
        claim = (
            update(authorization_codes)
            .where(authorization_codes.c.code_hash == digest)
            .where(authorization_codes.c.redeemed_at.is_(None))
            .where(authorization_codes.c.expires_at > now)
            .values(
                redeemed_at=now,
                family_id=family_id,
                access_jti=access_jti,
                access_expires_at=access_expires_at,
            )
        )
        with self.engine.begin() as conn:
            if conn.dialect.update_returning:
                row = conn.execute(claim.returning(*authorization_codes.c)).mappings().first()
            else:  # pragma: no cover - SQLite before 3.35
                row = _read(conn, digest) if conn.execute(claim).rowcount == 1 else None
            if row is not None:
                return AuthorizationCode.from_row(row)
            row = _read(conn, digest, lock=True)
            if row is None or row["redeemed_at"] is None:
                raise InvalidGrant(_INVALID)  # unknown, or expired unused
            self._revoke_issued(conn, row, now)
            replayed = CodeReplayed(_INVALID, client_id=row["client_id"], user_id=row["user_id"])
        # Committed: the replay's revocations stand although the request fails.
        raise replayed

    def _revoke_issued(self, conn: Connection, row: Any, now: float) -> None:
        """A redeemed code presented again: revoke what its first redemption issued."""
        conn.execute(
            update(authorization_codes)
            .where(authorization_codes.c.code_hash == row["code_hash"])
            .where(authorization_codes.c.replayed_at.is_(None))
            .values(replayed_at=now)
        )
        reason = "authorization code replayed"
        events = self.events if row["replayed_at"] is None else None  # told once per code
        if row["family_id"] is not None:
            revoke_family(conn, row["family_id"], now, events=events, reason=reason)
        if row["access_jti"] is not None:
            expires = row["access_expires_at"] or now
            self.revoked.revoke(row["access_jti"], expires, conn=conn)
            if events is not None:
                events.token_revoked(conn, row["access_jti"], int(expires), reason=reason)


def _read(conn: Connection, digest: str, *, lock: bool = False) -> Any:
    query = select(authorization_codes).where(authorization_codes.c.code_hash == digest)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).mappings().first()
