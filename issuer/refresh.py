"""Refresh tokens (RFC 6749 §6, RFC 9700 §4.14): opaque, stored hashed, rotated on every use.

Each token belongs to a family started by one login. Redeeming a token is one conditional
``UPDATE ... WHERE used_at IS NULL``: of two concurrent redemptions exactly one changes the row.
Presenting a token that was already redeemed revokes its whole family (reuse detection).

The replay grace (``ISSUER_REFRESH_REPLAY_GRACE``: a redeemed token presented again shortly after)
is in issuer/refresh_replay.py; ending families is in issuer/refresh_families.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping

from issuer.accounts import hash_secret
from issuer.db import refresh_tokens
from issuer.events import SecurityEvents
from issuer.refresh_batch import Rotation, RotationBatch
from issuer.refresh_families import (
    family_start_revoked,
    revoke_family,
    revoke_user,
    revoke_where,
)
from issuer.refresh_replay import replay_within_grace
from issuer.sessions import session_ended
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
    # The issuer session (issuer/sessions.py) the family was started from: None for families
    # from the password grant or from before migration 0005. Every successor keeps it.
    sid: str | None = None
    # The DPoP key (RFC 7638 thumbprint) the family is bound to (migration 0006; public clients
    # that sent a proof): a refresh needs a proof by that key. Every successor keeps it.
    jkt: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RefreshGrant:
        return cls(
            family_id=row["family_id"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            scopes=parse_scope(row["scopes"]),
            audience=row["audience"],
            expires_at=row["expires_at"],
            family_expires_at=row["family_expires_at"],
            sid=row["sid"],
            jkt=row["jkt"],
        )


@dataclass(frozen=True)
class Redemption:
    """Outcome of presenting a refresh token."""

    # "ok", "unknown", "expired", "revoked", "reused", "wrong_client", "wrong_key" (a family
    # bound to a DPoP key presented without a proof by that key: nothing spent, nothing revoked)
    status: str
    grant: RefreshGrant | None = None
    token: str | None = None  # the successor, when status is "ok"
    scopes: frozenset[str] = frozenset()
    audience: str = ""
    # "ok" for a replay within the grace: the presented token had been redeemed already, its
    # unused successor was spent and a new one issued (grants.py audits it).
    replayed: bool = False


@dataclass(frozen=True)
class SuccessorTerms:
    """What a refresh request asks of its successor, known before the stored grant is read:
    ``scopes`` None keeps the grant's (else they must lie within the grant's), ``audience`` None
    keeps the grant's (else the caller has checked it against the client's). Given to
    :meth:`RefreshTokenStore.redeem` as a promise that, for an enabled user, ``narrow`` would
    decide exactly this: PostgreSQL then rotates with the other rotations of its event-loop turn
    in one statement (issuer/refresh_batch.py).
    """

    scopes: frozenset[str] | None = None
    audience: str | None = None


class RefreshTokenStore:
    def __init__(
        self,
        engine: Engine,
        *,
        ttl: int,
        idle_ttl: int | None = None,
        events: SecurityEvents | None = None,
    ) -> None:
        self.engine = engine
        # Security events (issue 17): a family or session ended is pushed to resource services,
        # recorded in the transaction that ends it. None: nothing is recorded (tests, tools).
        self.events = events
        self.ttl = ttl  # the family's absolute lifetime, counted from the login
        # Each token's own lifetime: unused this long, the family is dead. Never beyond ``ttl``.
        self.idle_ttl = min(idle_ttl, ttl) if idle_ttl is not None else ttl
        # PostgreSQL: the common rotations of an event-loop turn as one statement (:meth:`redeem`).
        self.batch = RotationBatch(engine) if engine.dialect.name == "postgresql" else None

    async def aclose(self) -> None:
        """Close the batched rotations' own connections (the engine's pool is the caller's)."""
        if self.batch is not None:
            await self.batch.aclose()

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
        parent_hash: str | None = None,
        sid: str | None = None,
        jkt: str | None = None,
        start_family: str | None = None,
    ) -> str:
        """Store a new refresh token and return it.

        Without ``family_id`` it starts a family (a login). With ``family_id`` and no
        ``parent_hash`` it starts the family an authorization code's redemption chose
        (issuer/codes.py): if that code has been presented again meanwhile, the token is stored
        revoked (see :func:`family_start_revoked`). ``sid``: the issuer session the family
        started from (successors inherit it in :meth:`rotate`); a family started from a
        session that has ended (logout ran between the code and its redemption) is stored
        revoked too (see :func:`issuer.sessions.session_ended`). ``jkt``: the DPoP key the
        family is bound to (successors inherit it in :meth:`rotate`). ``start_family``: the id
        of the family a login starts here, chosen by the caller (the password grant's access
        token carries it as ``fid``); without it and without ``family_id``, a random one.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        family_end = family_expires_at if family_expires_at is not None else now + self.ttl
        row = {
            "token_hash": token_hash(token),
            "family_id": family_id or start_family or secrets.token_hex(16),
            "client_id": client_id,
            "user_id": user_id,
            "scopes": format_scope(scopes),
            "audience": audience,
            "created_at": now,
            "expires_at": min(now + self.idle_ttl, family_end),
            "family_expires_at": family_end,
            "used_at": None,
            "revoked_at": None,
            "parent_hash": parent_hash,
            "sid": sid,
            "jkt": jkt,
        }
        code_family = family_id is not None and parent_hash is None
        check_sid = sid if parent_hash is None else None  # successors: revoke_session's job
        if conn is not None:
            _insert(conn, row, now, code_family=code_family, sid=check_sid)
        else:
            with self.engine.begin() as c:
                _insert(c, row, now, code_family=code_family, sid=check_sid)
        return token

    def rotate(
        self,
        token: str,
        *,
        client_id: str,
        now: float,
        narrow: Callable[[RefreshGrant, Connection], tuple[frozenset[str], str]],
        replay_grace: float = 0.0,
        jkt: str | None = None,
    ) -> Redemption:
        """Redeem ``token`` and issue its successor in one transaction (blocking; from the event
        loop, :meth:`redeem`).

        ``narrow`` turns the stored grant into the scopes and audience of the new tokens,
        reading through the transaction's own connection (asking the pool for a second one while
        holding the write lock deadlocks once every pooled connection waits on that lock). If it
        raises, the transaction rolls back and the presented token stays usable. On success the
        redemption carries the new refresh token and the narrowed scopes and audience.

        ``replay_grace``: seconds within which a redeemed token whose successor is unused is
        honoured again (the module docstring says when and why); 0 (the default): never.

        ``jkt``: the thumbprint of the key of the DPoP proof that came with the request (None:
        no proof). A token of a family bound to a key is claimed only with that key; otherwise
        the answer is ``wrong_key`` and nothing changes (no use, no reuse detection: whoever
        lacks the key cannot spend the token or end its family).
        """
        digest = token_hash(token)
        with self.engine.begin() as conn:
            # Write first: the conditional UPDATE is the only arbiter between concurrent
            # redemptions (and in SQLite it takes the write lock before any read happens).
            claim = (
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == digest)
                .where(refresh_tokens.c.client_id == client_id)
                .where(refresh_tokens.c.used_at.is_(None))
                .where(refresh_tokens.c.revoked_at.is_(None))
                .where(refresh_tokens.c.expires_at > now)
                .where(
                    refresh_tokens.c.jkt.is_(None)
                    if jkt is None
                    else or_(refresh_tokens.c.jkt.is_(None), refresh_tokens.c.jkt == jkt)
                )
                .values(used_at=now)
            )
            row: RowMapping | None = None
            if conn.dialect.update_returning:  # PostgreSQL, SQLite >= 3.35: a claim reads nothing
                row = conn.execute(claim.returning(*refresh_tokens.c)).mappings().first()
                claimed = row is not None
            else:
                claimed = conn.execute(claim).rowcount == 1
            if row is None:
                row = _read(conn, digest)
            if row is None:
                return Redemption("unknown")
            grant = RefreshGrant.from_row(row)
            replayed = False
            if not claimed:
                if row["client_id"] != client_id:
                    # RFC 6749 §6: bound to its client. Not a replay by the owner: the family
                    # is left alone.
                    return Redemption("wrong_client", grant)
                if row["jkt"] is not None and row["jkt"] != jkt:
                    # Bound to a DPoP key this request has not proven: refused before any
                    # decision on use or reuse, so the holder of a stolen token alone changes
                    # nothing.
                    return Redemption("wrong_key", grant)
                if row["revoked_at"] is not None:
                    return Redemption("revoked", grant)
                if row["used_at"] is None:
                    return Redemption("expired", grant)
                if not replay_within_grace(conn, row, now=now, grace=replay_grace):
                    self._revoke_family(conn, grant.family_id, now, "refresh token reuse")
                    return Redemption("reused", grant)
                replayed = True
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
                parent_hash=digest,
                sid=grant.sid,
                jkt=grant.jkt,
            )
        return Redemption("ok", grant, new_token, scopes, audience, replayed=replayed)

    async def redeem(
        self,
        token: str,
        *,
        client_id: str,
        now: float,
        narrow: Callable[[RefreshGrant, Connection], tuple[frozenset[str], str]],
        replay_grace: float = 0.0,
        terms: SuccessorTerms | None = None,
        jkt: str | None = None,
    ) -> Redemption:
        """:meth:`rotate` from the event loop. ``terms``: what ``narrow`` would decide for an
        enabled user (:class:`SuccessorTerms`); on PostgreSQL such a rotation is first tried as
        part of one statement with the others of its event-loop turn (issuer/refresh_batch.py).
        What that claims nothing for, and everything else, runs :meth:`rotate` in a worker
        thread, which decides and answers as it always did."""
        if terms is not None and self.batch is not None:
            new_token = secrets.token_urlsafe(TOKEN_BYTES)
            row = await self.batch.rotate(
                Rotation(
                    digest=token_hash(token),
                    client_id=client_id,
                    now=now,
                    new_hash=token_hash(new_token),
                    idle_end=now + self.idle_ttl,
                    scopes=format_scope(terms.scopes) if terms.scopes is not None else None,
                    audience=terms.audience,
                    jkt=jkt,
                )
            )
            if row is not None:
                grant = RefreshGrant.from_row(row)
                scopes = grant.scopes if terms.scopes is None else terms.scopes
                return Redemption("ok", grant, new_token, scopes, row["new_audience"])
        return await anyio.to_thread.run_sync(
            lambda: self.rotate(
                token,
                client_id=client_id,
                now=now,
                narrow=narrow,
                replay_grace=replay_grace,
                jkt=jkt,
            )
        )

    def _revoke_family(self, conn: Connection, family_id: str, now: float, reason: str) -> None:
        revoke_family(conn, family_id, now, events=self.events, reason=reason)

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
            self._revoke_family(conn, row.family_id, now, "refresh token revoked")
        return True

    def revoke_session(self, sid: str, now: float) -> int:
        """End the families started from the issuer session ``sid`` (logout): every token of
        such a family carries the sid. Returns how many tokens were marked revoked (redeemed ones
        included)."""
        with self.engine.begin() as conn:
            revoked = revoke_where(conn, refresh_tokens.c.sid == sid, now)
            if self.events is not None:  # the session's access tokens carry its sid
                self.events.session_ended(conn, sid)
            return revoked

    def revoke_user(self, user_id: str, now: float) -> int:
        with self.engine.begin() as conn:
            return revoke_user(conn, user_id, now)


def _insert(
    conn: Connection, row: dict[str, Any], now: float, *, code_family: bool, sid: str | None
) -> None:
    conn.execute(refresh_tokens.insert().values(**row))
    if (code_family and family_start_revoked(conn, row["family_id"])) or (
        sid is not None and session_ended(conn, sid)
    ):
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == row["token_hash"])
            .values(revoked_at=now)
        )


def _read(conn: Connection, digest: str) -> RowMapping | None:
    """The refresh-token row of ``digest``, if any."""
    return (
        conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest))
        .mappings()
        .first()
    )
