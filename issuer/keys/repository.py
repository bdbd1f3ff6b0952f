"""Signing keys in the database: creating, scheduling, rotating and revoking them.

Synchronous: every method does database work, so callers on the event loop run it in a thread.
Every change of which key signs is decided here once for the whole deployment (see
:class:`KeyRepository`); what a key's times mean is :mod:`issuer.keys.record`'s business.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from issuer.db import key_rotations, signing_keys
from issuer.keys.record import KeyRecord, pending_records, signing_record
from issuer.keys.schedule import KeySchedule, rotation_due
from issuer.keys.sealing import KeySealer
from shared.errors import ConfigurationError, NotFound
from shared.keys import SigningKey, generate_signing_key, load_signing_key

logger = logging.getLogger("keyhouse.issuer.keys")


@dataclass(frozen=True)
class RevocationResult:
    record: KeyRecord
    revoked: bool  # False: the key was already revoked (earlier, or by another process just now)


@dataclass(frozen=True)
class RotationResult:
    record: KeyRecord
    created: bool  # False when another process (or an earlier call) had made this change


class KeyRepository:
    """Database operations on signing keys. Synchronous; callers pick the thread.

    Every change of which key signs goes through a row in ``key_rotations`` whose primary key
    names the change; the INSERT of that row is the first statement of the transaction that also
    inserts the key, so two processes deciding the same change create exactly one key.
    """

    def __init__(
        self,
        engine: Engine,
        sealer: KeySealer,
        *,
        access_token_ttl: int,
        schedule: KeySchedule | None = None,
    ) -> None:
        self.engine = engine
        self.sealer = sealer
        self.access_token_ttl = access_token_ttl
        self.schedule = schedule or KeySchedule(access_token_ttl=float(access_token_ttl))

    def records(self) -> list[KeyRecord]:
        columns = [c for c in signing_keys.c if c.name != "private_key"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns)).mappings().all()
        return [KeyRecord.from_row(r) for r in rows]

    def load_private(self, kid: str) -> SigningKey:
        with self.engine.connect() as conn:
            sealed = conn.execute(
                select(signing_keys.c.private_key).where(signing_keys.c.kid == kid)
            ).scalar_one_or_none()
        if sealed is None:
            raise NotFound(f"no signing key {kid}")
        # Unsealing authenticates it (AES-GCM): a key we made, loaded without re-validation.
        key = load_signing_key(self.sealer.unseal(bytes(sealed), kid=kid), sealed_by_us=True)
        if key.kid != kid:
            raise ConfigurationError(f"signing key {kid} does not match its thumbprint")
        return key

    def check_secret(self) -> None:
        """Refuse to go on with a secret that cannot open the newest stored key.

        Without this, a process started with the wrong ``ISSUER_SECRET_KEY`` would seal new
        keys that the rest of the deployment cannot open.
        """
        records = [r for r in self.records() if r.revoked_at is None]
        if records:
            self.load_private(max(records, key=lambda r: (r.created_at, r.kid)).kid)

    def _key_row(
        self, key: SigningKey, now: float, *, publish_at: float, activate_at: float
    ) -> dict[str, Any]:
        return {
            "kid": key.kid,
            "private_key": self.sealer.seal(key.private_pem(), kid=key.kid),
            "public_jwk": json.dumps(key.public_jwk()),
            "created_at": now,
            "publish_at": publish_at,
            "activate_at": activate_at,
            "retire_at": None,
            "remove_at": None,
            "revoked_at": None,
        }

    def _retire_before(self, conn: Connection, activate: float, *, except_kid: str) -> None:
        """Keys signing until ``activate`` retire then and stay published until every token
        they signed has expired (plus the verifier leeway margin)."""
        conn.execute(
            update(signing_keys)
            .where(signing_keys.c.kid != except_kid)
            .where(signing_keys.c.revoked_at.is_(None))
            .where(signing_keys.c.activate_at <= activate)
            .where(signing_keys.c.retire_at.is_(None) | (signing_keys.c.retire_at > activate))
            .values(retire_at=activate, remove_at=activate + self.schedule.retire_grace)
        )

    def _slot_kid(self, slot: str) -> str | None:
        with self.engine.connect() as conn:
            kid: str | None = conn.execute(
                select(key_rotations.c.kid).where(key_rotations.c.slot == slot)
            ).scalar_one_or_none()
        return kid

    def create(
        self,
        now: float,
        *,
        publish_at: float,
        activate_at: float,
        slot: str | None = None,
    ) -> RotationResult:
        """Insert a new key. With ``slot``, at most one key is ever created for that slot:
        a caller that loses the race gets the winner's key with ``created=False``."""
        key = generate_signing_key()
        row = self._key_row(key, now, publish_at=publish_at, activate_at=activate_at)
        try:
            with self.engine.begin() as conn:
                if slot is not None:
                    conn.execute(
                        key_rotations.insert().values(slot=slot, kid=key.kid, created_at=now)
                    )
                conn.execute(signing_keys.insert().values(**row))
                self._retire_before(conn, activate_at, except_kid=key.kid)
        except IntegrityError:
            if slot is None:
                raise
            winner = self._slot_kid(slot)
            if winner is None:
                raise
            logger.info("key change %s was already made by another process: %s", slot, winner)
            return RotationResult(self.get(winner), created=False)
        logger.info(
            "created signing key %s (publish %s, activate %s)", key.kid, publish_at, activate_at
        )
        return RotationResult(self.get(key.kid), created=True)

    def get(self, kid: str) -> KeyRecord:
        for record in self.records():
            if record.kid == kid:
                return record
        raise NotFound(f"no signing key {kid}")

    def ensure_signing_key(self, now: float) -> KeyRecord:
        """Make sure some key signs at ``now`` (first start; or healing a broken schedule)."""
        records = self.records()
        current = signing_record(records, now)
        if current is not None:
            return current
        if records:
            latest = max(records, key=lambda r: (r.created_at, r.kid))
            slot = f"heal:{latest.kid}"
        else:
            slot = "initial"
        made = self.create(now, publish_at=now, activate_at=now, slot=slot)
        # A process that lost the race read its clock a moment before the winner did: judge
        # at the winner's activation time, which is at most that moment later.
        current = signing_record(self.records(), max(now, made.record.activate_at))
        if current is None:
            raise ConfigurationError("no signing key is available")
        return current

    def schedule_next(self, now: float, *, force: bool = False) -> RotationResult | None:
        """The scheduler's tick: when the signing key's successor is due to be created (see
        :func:`rotation_due`; ``force``: whenever it has none), create it on the schedule
        (published ``publish_ahead`` before it activates). Idempotent across processes."""
        records = self.records()
        current = signing_record(records, now)
        if current is None:
            current = self.ensure_signing_key(now)
            records = self.records()
        if pending_records(records, now):
            return None
        if not force and not rotation_due(records, now, self.schedule):
            return None
        publish_at, activate_at = self.schedule.successor_times(current, now)
        return self.create(
            now, publish_at=publish_at, activate_at=activate_at, slot=f"rotate:{current.kid}"
        )

    def rotate(self, now: float, *, immediate: bool = False) -> RotationResult:
        """Bring the next key forward: published now and signing after ``publish_ahead``
        (``immediate``: signing now). The scheduled successor is used when there is one."""
        made_here = False
        pending = pending_records(self.records(), now)
        if not pending:
            result = self.schedule_next(now, force=True)
            # Made and published at once by this call (its schedule was already overdue).
            made_here = result is not None and result.created and result.record.publish_at <= now
            pending = pending_records(self.records(), now)
            if not pending:  # cannot happen: schedule_next just made sure of one
                raise ConfigurationError("no successor key could be scheduled")
        successor = pending[0]
        target_activate = now if immediate else now + self.schedule.publish_ahead
        activate = min(successor.activate_at, target_activate)
        publish = min(successor.publish_at, now)
        if not immediate and successor.activate_at <= target_activate + 1.0:
            # A planned rotation is already under way (another caller, maybe on another
            # process, just made it): leave its times alone so every caller reports the same.
            activate, publish = successor.activate_at, successor.publish_at
        kid = signing_keys.c.kid == successor.kid
        with self.engine.begin() as conn:
            changed = 0
            if (activate, publish) != (successor.activate_at, successor.publish_at):
                # Compare-and-set on the times we read: when two processes bring the same
                # successor forward at once, one update lands and the other changes nothing,
                # so both answer with the same (the winner's) times.
                changed = conn.execute(
                    update(signing_keys)
                    .where(
                        kid,
                        signing_keys.c.revoked_at.is_(None),
                        signing_keys.c.publish_at == successor.publish_at,
                        signing_keys.c.activate_at == successor.activate_at,
                    )
                    .values(publish_at=publish, activate_at=activate)
                ).rowcount
            effective = conn.execute(select(signing_keys.c.activate_at).where(kid)).scalar_one()
            self._retire_before(conn, effective, except_kid=successor.kid)
        # "created": this call put the key into the JWKS (new, or only scheduled until now);
        # False when it was already published (a rotation was under way).
        created = made_here or (changed == 1 and successor.publish_at > now)
        return RotationResult(self.get(successor.kid), created=created)

    def revoke(
        self,
        kid: str,
        now: float,
        *,
        new_key: Callable[[], SigningKey] = generate_signing_key,
        on_revoked: Callable[[Connection], None] | None = None,
    ) -> RevocationResult:
        """Unpublish ``kid`` at once; if it was signing, a fresh key signs from ``now``
        (made by ``new_key``, called only then).

        ``revoked`` is False when the key was already revoked, including by another process
        deciding the same revocation at the same moment: exactly one caller gets True, and
        ``on_revoked`` runs inside that caller's transaction, the one that revokes (the
        key-revoked security event is recorded there, so it commits with the revocation).
        """
        records = self.records()
        target = next((r for r in records if r.kid == kid), None)
        if target is None:
            raise NotFound(f"no signing key {kid}")
        if target.revoked_at is not None:
            return RevocationResult(target, revoked=False)
        signing = signing_record(records, now)
        hook = on_revoked or _nothing
        if signing is not None and signing.kid == kid:
            revoked = self._revoke_signing(target, now, new_key, hook)
        elif target.activate_at > now:
            revoked = self._revoke_pending(target, now, hook)
        else:
            with self.engine.begin() as conn:
                revoked = (
                    conn.execute(
                        update(signing_keys)
                        .where(signing_keys.c.kid == kid)
                        .where(signing_keys.c.revoked_at.is_(None))
                        .values(revoked_at=now)
                    ).rowcount
                    == 1
                )
                if revoked:
                    hook(conn)
        return RevocationResult(self.get(kid), revoked=revoked)

    def _revoke_signing(
        self,
        target: KeyRecord,
        now: float,
        new_key: Callable[[], SigningKey],
        hook: Callable[[Connection], None],
    ) -> bool:
        # The replacement takes the revoked key's place in the schedule: it signs from now and
        # retires when the revoked key would have (a pending successor keeps its time).
        key = new_key()
        row = self._key_row(key, now, publish_at=now, activate_at=now)
        row["retire_at"] = target.retire_at
        row["remove_at"] = target.remove_at
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    key_rotations.insert().values(
                        slot=f"revoke:{target.kid}", kid=key.kid, created_at=now
                    )
                )
                conn.execute(signing_keys.insert().values(**row))
                conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.kid == target.kid)
                    .values(revoked_at=now)
                )
                hook(conn)
        except IntegrityError:
            if self._slot_kid(f"revoke:{target.kid}") is None:
                raise
            return False  # another process revoked it at the same moment and made the replacement
        logger.warning("revoked signing key %s; %s signs from now", target.kid, key.kid)
        return True

    def _revoke_pending(
        self, target: KeyRecord, now: float, hook: Callable[[Connection], None]
    ) -> bool:
        # A successor that never signed: the keys it would have retired keep signing, and the
        # scheduler may schedule a new successor (its slot is freed).
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(signing_keys)
                .where(signing_keys.c.kid == target.kid)
                .where(signing_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            if changed != 1:
                return False  # another process revoked it first (and did the rest)
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.kid != target.kid)
                .where(signing_keys.c.retire_at == target.activate_at)
                .values(retire_at=None, remove_at=None)
            )
            conn.execute(
                delete(key_rotations)
                .where(key_rotations.c.kid == target.kid)
                .where(key_rotations.c.slot.like("rotate:%"))
            )
            hook(conn)
        return True


def _nothing(conn: Connection) -> None:
    """The default ``on_revoked``: nothing more in the revoking transaction."""
