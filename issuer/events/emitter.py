"""What the issuer says when it revokes something: one method per kind of security event, each
building the SET claims (``shared/security_events.py``) and recording them in the caller's
transaction, so an event is stored exactly when its revocation commits."""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from issuer.accounts import user_subject
from issuer.events.store import EventStore
from issuer.settings import IssuerSettings
from shared import security_events as se
from shared.clock import Clock, system_clock


class SecurityEvents:
    """Records events for ``issuer`` (its URL). ``access_token_ttl`` bounds what a family,
    session, user or key event covers: no access token issued up to now outlives now + TTL."""

    def __init__(
        self,
        store: EventStore,
        *,
        issuer: str,
        access_token_ttl: int,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.access_token_ttl = access_token_ttl
        self.clock = clock

    def _horizon(self, now: int) -> int:
        return now + self.access_token_ttl

    def key_revoked(self, conn: Connection, kid: str) -> None:
        now = int(self.clock())
        exp = self._horizon(now)
        claims = se.key_revoked(issuer=self.issuer, now=now, kid=kid, exp=exp)
        self.store.record(conn, claims, expires=exp)

    def token_revoked(self, conn: Connection, jti: str, exp: int, *, reason: str) -> None:
        now = int(self.clock())
        claims = se.token_revoked(
            issuer=self.issuer, now=now, token_jti=jti, exp=exp, reason=reason
        )
        self.store.record(conn, claims, expires=exp)

    def family_ended(self, conn: Connection, family_id: str, *, reason: str) -> None:
        now = int(self.clock())
        exp = self._horizon(now)
        claims = se.family_ended(
            issuer=self.issuer, now=now, family_id=family_id, exp=exp, reason=reason
        )
        self.store.record(conn, claims, expires=exp)

    def session_ended(self, conn: Connection, sid: str, *, reason: str = "signed out") -> None:
        now = int(self.clock())
        exp = self._horizon(now)
        claims = se.session_ended(issuer=self.issuer, now=now, sid=sid, exp=exp, reason=reason)
        self.store.record(conn, claims, expires=exp)

    def user_disabled(self, conn: Connection, user_id: str) -> None:
        now = int(self.clock())
        exp = self._horizon(now)
        claims = se.user_disabled(issuer=self.issuer, now=now, sub=user_subject(user_id), exp=exp)
        self.store.record(conn, claims, expires=exp)

    def password_changed(self, conn: Connection, user_id: str) -> None:
        now = int(self.clock())
        exp = self._horizon(now)
        claims = se.password_changed(
            issuer=self.issuer, now=now, sub=user_subject(user_id), exp=exp
        )
        self.store.record(conn, claims, expires=exp)


def security_events(
    engine: Engine, settings: IssuerSettings, *, clock: Clock = system_clock
) -> SecurityEvents:
    """The events of the issuer ``settings`` describe, stored through ``engine`` (the serving
    process and the CLI alike)."""
    return SecurityEvents(
        EventStore(engine, clock=clock),
        issuer=settings.issuer_url,
        access_token_ttl=settings.access_token_ttl,
        clock=clock,
    )
