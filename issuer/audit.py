"""The security audit log: failed logins, throttling, refresh-token reuse and replays, key
revocation.

Rows go to the ``audit_events`` table and are shown by ``issuer audit``. An event carries only
identifiers the issuer itself assigned or observed (event name, client_id, ``user:<id>`` subject,
peer address) plus a short fixed description chosen by the code that records it. Nothing a caller
typed as a secret (client secret, password, token) is ever passed in, and usernames that do not
exist are not recorded either (a password typed into the username field must not land here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine, RowMapping

from issuer.db import audit_events
from shared.clock import Clock, system_clock

logger = logging.getLogger("keyhouse.audit")

# The events this module knows; ``record`` refuses any other name.
CLIENT_AUTH_FAILED = "client_auth_failed"
USER_AUTH_FAILED = "user_auth_failed"
USER_LOGIN = "user_login"  # a person signed in on the login page (a new issuer session)
THROTTLED = "auth_throttled"
REFRESH_REUSE = "refresh_token_reuse"
REFRESH_WRONG_CLIENT = "refresh_token_wrong_client"
REFRESH_REPLAY_GRACE = "refresh_replay_within_grace"
REFRESH_REVOKED = "refresh_family_revoked"
CODE_REUSE = "authorization_code_reuse"  # a redeemed code presented again: its tokens revoked
USER_DISABLED = "user_disabled"
USER_ENABLED = "user_enabled"
USER_PASSWORD_CHANGED = "user_password_changed"
KEY_REVOKED = "key_revoked"
EVENTS = frozenset(
    {
        CLIENT_AUTH_FAILED,
        USER_AUTH_FAILED,
        USER_LOGIN,
        THROTTLED,
        REFRESH_REUSE,
        REFRESH_WRONG_CLIENT,
        REFRESH_REPLAY_GRACE,
        REFRESH_REVOKED,
        CODE_REUSE,
        USER_DISABLED,
        USER_ENABLED,
        USER_PASSWORD_CHANGED,
        KEY_REVOKED,
    }
)
MAX_FIELD = 200


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: float
    event: str
    client_id: str | None
    subject: str | None
    address: str | None
    detail: str

    @classmethod
    def from_row(cls, row: RowMapping) -> AuditEvent:
        return cls(
            id=row["id"],
            at=row["at"],
            event=row["event"],
            client_id=row["client_id"],
            subject=row["subject"],
            address=row["address"],
            detail=row["detail"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "event": self.event,
            "client_id": self.client_id,
            "subject": self.subject,
            "address": self.address,
            "detail": self.detail,
        }


def _bounded(value: str | None) -> str | None:
    if value is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in value)[:MAX_FIELD]


class AuditLog:
    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    def record(
        self,
        event: str,
        *,
        client_id: str | None = None,
        subject: str | None = None,
        address: str | None = None,
        detail: str = "",
    ) -> None:
        """Append one event. A failed database write is logged, never raised: a broken audit
        write must not turn into a 500. An unknown ``event`` is a programming error and raises
        :class:`ValueError`."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        row = {
            "at": self.clock(),
            "event": event,
            "client_id": _bounded(client_id),
            "subject": _bounded(subject),
            "address": _bounded(address),
            "detail": _bounded(detail) or "",
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(audit_events.insert().values(**row))
        except Exception as exc:
            logger.error("writing the audit event %s failed: %s", event, type(exc).__name__)
        # The same fields go to the log, so a log pipeline sees security events too.
        logger.info(
            "audit event=%s client_id=%s subject=%s address=%s detail=%s",
            event,
            row["client_id"],
            row["subject"],
            row["address"],
            row["detail"],
        )

    def recent(self, limit: int = 50) -> list[AuditEvent]:
        """The newest ``limit`` events, newest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(audit_events)
                    .order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [AuditEvent.from_row(r) for r in rows]


def key_revoked(engine: Engine, kid: str, *, now: float | None = None) -> None:
    """Hook for the key code: record that signing key ``kid`` was revoked."""
    at = system_clock() if now is None else now
    AuditLog(engine, clock=lambda: at).record(KEY_REVOKED, detail=f"kid={kid}")
