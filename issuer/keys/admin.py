"""Key administration shared by the admin HTTP API and the CLI: one code path for both."""

from __future__ import annotations

from typing import Any

from issuer import audit
from issuer.events import SecurityEvents
from issuer.keys.record import KeyRecord, signing_record
from issuer.keys.repository import KeyRepository
from shared.clock import Clock, system_clock


class KeyAdmin:
    def __init__(
        self,
        repo: KeyRepository,
        *,
        clock: Clock = system_clock,
        events: SecurityEvents | None = None,
    ) -> None:
        self.repo = repo
        self.clock = clock
        # A revocation is pushed to the resource services (issue 17): the key-revoked event,
        # recorded by the one caller whose revocation took effect.
        self.events = events

    def schedule(self) -> dict[str, Any]:
        s = self.repo.schedule
        return {
            "rotation_interval": s.rotation_interval,
            "publish_ahead": s.publish_ahead,
            "access_token_ttl": s.access_token_ttl,
            "retire_margin": s.retire_margin,
        }

    def list(self) -> list[dict[str, Any]]:
        now = self.clock()
        records = self.repo.records()
        signing = signing_record(records, now)
        return [
            {**r.to_dict(now), "signing": signing is not None and r.kid == signing.kid}
            for r in sorted(records, key=lambda r: (r.created_at, r.kid))
        ]

    def status(self) -> dict[str, Any]:
        """The key list plus the instant it was computed at and the schedule behind it."""
        now = self.clock()
        return {"now": now, "keys": self.list(), "schedule": self.schedule()}

    def _describe(self, record: KeyRecord, now: float, **extra: Any) -> dict[str, Any]:
        records = self.repo.records()
        signing = signing_record(records, now)
        return {
            **record.to_dict(now),
            "signing": signing is not None and record.kid == signing.kid,
            "now": now,
            **extra,
        }

    def rotate(self, *, now: bool = False) -> dict[str, Any]:
        """Planned rotation: the next key is published now and signs after the publish-ahead
        time (``now=True``: it signs at once). Uses the scheduled successor when there is one."""
        at = self.clock()
        previous = signing_record(self.repo.records(), at)
        result = self.repo.rotate(at, immediate=now)
        return self._describe(
            result.record,
            at,
            created=result.created,
            immediate=now,
            previous_kid=None if previous is None else previous.kid,
        )

    def revoke(self, kid: str) -> dict[str, Any]:
        """Revoke ``kid``. Revoking a key that is already revoked changes nothing and records
        no second audit event: the answer is the key as it is, with ``already_revoked`` true
        (``revoked_at`` is when it was revoked). The CLI and ``POST /admin/keys/{kid}/revoke``
        both answer through here."""
        at = self.clock()
        result = self.repo.revoke(kid, at)
        if result.revoked:
            if self.events is not None:
                events = self.events
                with self.repo.engine.begin() as conn:
                    events.key_revoked(conn, kid)
            audit.key_revoked(self.repo.engine, kid, now=at)
        signing = signing_record(self.repo.records(), at)
        return self._describe(
            result.record,
            at,
            already_revoked=not result.revoked,
            signing_kid=None if signing is None else signing.kid,
        )

    def tick(self) -> dict[str, Any] | None:
        """One step of the rotation scheduler (every issuer process runs it): when the signing
        key has no successor, schedule one. Returns the new key when this call created it."""
        at = self.clock()
        result = self.repo.schedule_next(at)
        if result is None or not result.created:
            return None
        return result.record.to_dict(at)
