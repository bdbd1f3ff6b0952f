"""Disabling, enabling and re-passwording users: one code path for the CLI (``issuer users``)
and the admin API (``POST /admin/users/{username}/disable``), like issuer/keys/admin.py for keys.

Disabling a user, in one transaction: the flag, every refresh token of theirs revoked, their
sign-in sessions ended, and the ``account-disabled`` security event for the resource services
(issuer/events/); then the audit record. A password change does the same after the new hash is
stored, with a ``credential-change`` event. Enabling a user again only clears the flag: tokens
issued before the disable stay refused at the services (the events cover tokens issued up to
them), new ones are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from issuer import audit
from issuer.accounts import AccountStore, User
from issuer.db import users
from issuer.events import SecurityEvents
from issuer.refresh_families import revoke_user
from issuer.sessions import end_user_sessions
from shared.clock import Clock, system_clock
from shared.errors import NotFound


class UnknownUser(NotFound):
    """No user by that name: 404 at the admin API, one line and exit 2 in the CLI."""


@dataclass(frozen=True)
class UserChange:
    user: User
    refresh_tokens_revoked: int = 0
    sessions_ended: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "username": self.user.username,
            "disabled": self.user.disabled,
            "refresh_tokens_revoked": self.refresh_tokens_revoked,
            "sessions_ended": self.sessions_ended,
        }


class UserAdmin:
    def __init__(
        self,
        accounts: AccountStore,
        *,
        events: SecurityEvents | None,
        clock: Clock = system_clock,
    ) -> None:
        self.accounts = accounts
        self.engine: Engine = accounts.engine
        self.events = events
        self.clock = clock

    def set_disabled(self, username: str, disabled: bool, *, by: str) -> UserChange:
        """Disable (or enable) ``username``; ``by`` says who, in the audit record ("the CLI")."""
        now = self.clock()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(users).where(users.c.username == username).values(disabled=disabled)
            ).rowcount
            if changed == 0:
                raise UnknownUser(f"no user {username!r}")
            user = _read(conn, username)
            revoked = ended = 0
            if disabled:
                revoked, ended = self._end_everything(conn, user, now)
                if self.events is not None:
                    self.events.user_disabled(conn, user.user_id)
        detail = f"by {by}"
        if disabled:
            detail += f"; {revoked} refresh tokens revoked, {ended} sign-in sessions ended"
        audit.AuditLog(self.engine, clock=self.clock).record(
            audit.USER_DISABLED if disabled else audit.USER_ENABLED,
            subject=user.subject,
            detail=detail,
        )
        return UserChange(user, revoked, ended)

    def set_password(self, username: str, password: str, *, by: str) -> UserChange:
        """A new password for ``username`` (hashed first, outside any transaction); then, in one
        transaction, their refresh tokens and sign-in sessions end and the event is recorded."""
        user = self.accounts.set_user_password(username, password)
        now = self.clock()
        with self.engine.begin() as conn:
            revoked, ended = self._end_everything(conn, user, now)
            if self.events is not None:
                self.events.password_changed(conn, user.user_id)
        audit.AuditLog(self.engine, clock=self.clock).record(
            audit.USER_PASSWORD_CHANGED,
            subject=user.subject,
            detail=f"by {by}; {revoked} refresh tokens revoked, {ended} sign-in sessions ended",
        )
        return UserChange(user, revoked, ended)

    @staticmethod
    def _end_everything(conn: Connection, user: User, now: float) -> tuple[int, int]:
        return revoke_user(conn, user.user_id, now), end_user_sessions(conn, user.user_id, now)


def _read(conn: Connection, username: str) -> User:
    row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
    assert row is not None  # updated just now, in this transaction
    return User.from_row(row)
