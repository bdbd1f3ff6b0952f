"""Issuer sessions: a person signed in on the login page (OWASP Session Management guidance).

A session is a database row (every replica sees it) with two names: ``sid``, public (it goes
into tokens and id_tokens as the ``sid`` claim, and logout ends the refresh-token families
started from it), and the cookie's value, 256 random bits that only the browser holds: the row
keeps its SHA-256, so a read of the database yields no usable cookie. A login always creates a
new session (no fixation: an id presented before login is never promoted).

Two lifetimes: idle (``ISSUER_SESSION_IDLE_TTL``, default 1800 s: no request this long ends it)
and absolute (``ISSUER_SESSION_TTL``, default 28800 s from the login, whatever the activity).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from issuer.db import login_sessions

COOKIE_BYTES = 32  # 256 bits
MAX_COOKIE = 100  # longer than any value this module makes: not looked up
# Ended and expired rows are deleted this long after their end (kept a while for the audit).
PURGE_AFTER = 86400.0


def cookie_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class LoginSession:
    sid: str
    user_id: str
    auth_time: float  # when the user entered the password (OIDC ``auth_time``)
    created_at: float
    last_seen_at: float
    expires_at: float  # the absolute end

    @classmethod
    def from_row(cls, row: Any) -> LoginSession:
        return cls(
            sid=row["sid"],
            user_id=row["user_id"],
            auth_time=row["auth_time"],
            created_at=row["created_at"],
            last_seen_at=row["last_seen_at"],
            expires_at=row["expires_at"],
        )


class SessionStore:
    def __init__(self, engine: Engine, *, idle_ttl: float, ttl: float) -> None:
        if idle_ttl <= 0 or ttl <= 0:
            raise ValueError("session lifetimes must be positive")
        self.engine = engine
        self.idle_ttl = min(idle_ttl, ttl)
        self.ttl = ttl

    def create(self, user_id: str, now: float) -> tuple[str, LoginSession]:
        """A new session for ``user_id`` who just logged in: (the cookie's value, the session)."""
        value = secrets.token_urlsafe(COOKIE_BYTES)
        session = LoginSession(
            sid=secrets.token_urlsafe(16),
            user_id=user_id,
            auth_time=now,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.ttl,
        )
        with self.engine.begin() as conn:
            conn.execute(
                login_sessions.insert().values(
                    sid=session.sid,
                    cookie_hash=cookie_hash(value),
                    user_id=user_id,
                    auth_time=session.auth_time,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=session.expires_at,
                    ended_at=None,
                )
            )
            if secrets.randbelow(100) == 0:  # now and then, never on a hot path
                conn.execute(
                    delete(login_sessions).where(login_sessions.c.expires_at < now - PURGE_AFTER)
                )
        return value, session

    def find(self, cookie_value: str, now: float) -> LoginSession | None:
        """The live session the cookie names, its ``last_seen_at`` moved to ``now``; None when
        unknown, ended, idle longer than the idle lifetime or past the absolute one."""
        if not cookie_value or len(cookie_value) > MAX_COOKIE:
            return None
        digest = cookie_hash(cookie_value)
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(login_sessions).where(login_sessions.c.cookie_hash == digest))
                .mappings()
                .first()
            )
            if row is None or not self._live(row, now):
                return None
            session = LoginSession.from_row(row)
            # Conditional: a concurrent logout (ended_at set) is not undone.
            touched = conn.execute(
                update(login_sessions)
                .where(login_sessions.c.sid == session.sid)
                .where(login_sessions.c.ended_at.is_(None))
                .values(last_seen_at=now)
            ).rowcount
        if touched != 1:
            return None
        return LoginSession(
            session.sid,
            session.user_id,
            session.auth_time,
            session.created_at,
            now,
            session.expires_at,
        )

    def _live(self, row: Any, now: float) -> bool:
        return bool(
            row["ended_at"] is None
            and now < row["expires_at"]
            and now - row["last_seen_at"] < self.idle_ttl
        )

    def end(self, sid: str, now: float) -> bool:
        """End the session ``sid`` (logout). True if a live one was ended."""
        with self.engine.begin() as conn:
            ended = conn.execute(
                update(login_sessions)
                .where(login_sessions.c.sid == sid)
                .where(login_sessions.c.ended_at.is_(None))
                .values(ended_at=now)
            ).rowcount
        return bool(ended)

    def end_user(self, user_id: str, now: float) -> int:
        """End every live session of ``user_id`` (disabled, or the password changed: OWASP
        asks that a credential change end the sessions). Returns how many."""
        with self.engine.begin() as conn:
            return end_user_sessions(conn, user_id, now)

    def get(self, sid: str) -> LoginSession | None:
        """The session ``sid`` whatever its state (ended or expired ones included)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(login_sessions).where(login_sessions.c.sid == sid))
                .mappings()
                .first()
            )
        return LoginSession.from_row(row) if row else None


def session_ended(conn: Connection, sid: str) -> bool:
    """Has the issuer session ``sid`` ended (logout)? For a refresh family started from it
    (``issuer.refresh``): reads (on PostgreSQL: locks) the session's row, so this and a logout
    are serialised. Logout must end the session (:meth:`SessionStore.end`) first and then revoke
    its families (``RefreshTokenStore.revoke_session``): either the end is seen here or that
    revocation sees the token the caller's transaction inserted. An unknown sid has not ended.
    """
    query = select(login_sessions.c.ended_at).where(login_sessions.c.sid == sid)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar() is not None


def end_user_sessions(conn: Connection, user_id: str, now: float) -> int:
    """:meth:`SessionStore.end_user` in the caller's transaction (issuer/user_admin.py)."""
    return conn.execute(
        update(login_sessions)
        .where(login_sessions.c.user_id == user_id)
        .where(login_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    ).rowcount
