"""Key administration shared by the admin HTTP API and the CLI: one code path for both."""

from __future__ import annotations

import logging
import threading
from typing import Any

from issuer import audit
from issuer.events import SecurityEvents
from issuer.keys.record import KeyRecord, signing_record
from issuer.keys.repository import KeyRepository
from shared.clock import Clock, system_clock
from shared.keys import SigningKey, generate_signing_key

logger = logging.getLogger(__name__)


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
        # recorded in the transaction of the one caller whose revocation took effect.
        self.events = events
        # A spare key for the next emergency revocation of the signing key (see prepare_spare).
        self._spare: SigningKey | None = None
        self._spare_lock = threading.Lock()
        self._spare_wanted = False

    def prepare_spare(self) -> None:
        """Make a replacement key ready in a background thread, so that an emergency
        revocation does not wait for RSA key generation (a prime search: 0.05-2 s, heavy-tailed;
        measured by the drill as part of the time to the first refusal). The admin API calls this
        on its first use and a revocation after it has used the spare; the spare lives in memory
        only, like the loaded signing keys, and is sealed into the database only when used."""
        with self._spare_lock:
            if self._spare is not None or self._spare_wanted:
                return
            self._spare_wanted = True
        threading.Thread(target=self._make_spare, name="keyhouse-spare-key", daemon=True).start()

    def _make_spare(self) -> None:
        try:
            key = generate_signing_key()
        except Exception:  # pragma: no cover - key generation does not fail in practice
            logger.exception("could not prepare a spare signing key")
            key = None
        with self._spare_lock:
            self._spare, self._spare_wanted = key, False

    def _replacement(self) -> SigningKey:
        """The key that replaces a revoked signing key: the spare when one is ready (and the
        next one prepared), else one generated now."""
        with self._spare_lock:
            key, self._spare = self._spare, None
        if key is None:
            return generate_signing_key()
        self.prepare_spare()
        return key

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
        events = self.events
        result = self.repo.revoke(
            kid,
            at,
            new_key=self._replacement,
            on_revoked=None if events is None else lambda conn: events.key_revoked(conn, kid),
        )
        if result.revoked:
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
