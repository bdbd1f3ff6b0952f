"""Signing keys: their schedule in the database and the loaded, in-memory key ring.

Each key carries ``publish_at``, ``activate_at``, ``retire_at`` and ``remove_at`` (plus
``revoked_at``); its state at any instant is a pure function of those times and the clock, so
every issuer process reading the same rows agrees on which key signs and which are published.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from issuer.db import key_rotations, signing_keys
from issuer.sealing import KeySealer, find_secret, generate_secret_file
from issuer.settings import PUBLISH_MARGIN, IssuerSettings
from shared.clock import Clock, system_clock
from shared.errors import ConfigurationError, NotFound
from shared.jwks import VerificationKey, build_jwks, encode_jwks, jwks_etag, parse_jwk
from shared.keys import SigningKey, generate_signing_key, load_signing_key
from shared.tokens import TokenSigner

logger = logging.getLogger("keyhouse.issuer.keys")

# Tokens are accepted up to this many seconds after ``exp`` by verifiers (their leeway); a retired
# key stays published this much longer than the tokens it signed.
VERIFIER_LEEWAY_MARGIN = 60.0


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    public_jwk: dict[str, Any]
    created_at: float
    publish_at: float
    activate_at: float
    retire_at: float | None
    remove_at: float | None
    revoked_at: float | None

    @classmethod
    def from_row(cls, row: RowMapping) -> KeyRecord:
        return cls(
            kid=row["kid"],
            public_jwk=json.loads(row["public_jwk"]),
            created_at=row["created_at"],
            publish_at=row["publish_at"],
            activate_at=row["activate_at"],
            retire_at=row["retire_at"],
            remove_at=row["remove_at"],
            revoked_at=row["revoked_at"],
        )

    def state(self, now: float) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.remove_at is not None and self.remove_at <= now:
            return "removed"
        if now < self.publish_at:
            return "scheduled"
        if now < self.activate_at:
            return "published"
        if self.retire_at is None or now < self.retire_at:
            return "active"
        return "retired"

    def is_published(self, now: float) -> bool:
        return self.state(now) in {"published", "active", "retired"}

    def can_sign(self, now: float) -> bool:
        return self.state(now) == "active"

    def change_times(self) -> list[float]:
        return [
            t
            for t in (
                self.publish_at,
                self.activate_at,
                self.retire_at,
                self.remove_at,
                self.revoked_at,
            )
            if t is not None
        ]

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "state": self.state(now),
            "created_at": self.created_at,
            "publish_at": self.publish_at,
            "activate_at": self.activate_at,
            "retire_at": self.retire_at,
            "remove_at": self.remove_at,
            "revoked_at": self.revoked_at,
        }


def signing_record(records: list[KeyRecord], now: float) -> KeyRecord | None:
    """The key that signs at ``now``: the most recently activated active key (ties by kid)."""
    candidates = [r for r in records if r.can_sign(now)]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.activate_at, r.kid))


def published_records(records: list[KeyRecord], now: float) -> list[KeyRecord]:
    return sorted((r for r in records if r.is_published(now)), key=lambda r: (r.activate_at, r.kid))


def next_change(records: list[KeyRecord], now: float) -> float | None:
    future = [t for r in records for t in r.change_times() if t > now]
    return min(future) if future else None


@dataclass(frozen=True)
class KeySchedule:
    """When keys change: the policy behind every ``publish_at``/``activate_at``/``remove_at``.

    * ``rotation_interval``: a key signs for this long before its successor activates.
    * ``publish_ahead``: the successor is in the JWKS this long before it signs (at least one
      JWKS ``max-age`` plus a margin, so no verifier meets an unknown ``kid`` when it activates).
    * ``retire_margin``: a retired key stays published this long after the last token it signed
      has expired (verifiers accept tokens up to their leeway after ``exp``).
    """

    rotation_interval: float = 2_592_000.0
    publish_ahead: float = 360.0
    access_token_ttl: float = 900.0
    retire_margin: float = VERIFIER_LEEWAY_MARGIN
    # The scheduler writes the successor into the database this long before its publish time
    # (at least one JWKS max-age: a max-age handed out before the row existed cannot outlive the
    # publish time), so the change is in every process's view before it happens.
    create_lead: float = 360.0

    @classmethod
    def from_settings(cls, settings: IssuerSettings) -> KeySchedule:
        return cls(
            rotation_interval=float(settings.key_rotation_interval),
            publish_ahead=float(settings.key_publish_ahead),
            access_token_ttl=float(settings.access_token_ttl),
            retire_margin=float(settings.key_retire_margin),
            create_lead=float(settings.jwks_max_age + PUBLISH_MARGIN),
        )

    @property
    def retire_grace(self) -> float:
        return self.access_token_ttl + self.retire_margin

    def successor_times(self, current: KeyRecord, now: float) -> tuple[float, float]:
        """``(publish_at, activate_at)`` of the key that follows ``current`` on schedule."""
        activate = current.activate_at + self.rotation_interval
        publish = max(now, activate - self.publish_ahead)
        return publish, max(activate, publish + self.publish_ahead)


def pending_records(records: list[KeyRecord], now: float) -> list[KeyRecord]:
    """Keys that will sign later (scheduled or published ahead), earliest activation first."""
    return sorted(
        (r for r in records if r.revoked_at is None and r.activate_at > now),
        key=lambda r: (r.activate_at, r.kid),
    )


def rotation_due(records: list[KeyRecord], now: float, schedule: KeySchedule) -> bool:
    """True when the scheduler must create the signing key's successor now: it has none yet,
    and its publish time is within ``create_lead``."""
    current = signing_record(records, now)
    if current is None:
        return True
    if pending_records(records, now):
        return False
    publish_at, _activate_at = schedule.successor_times(current, now)
    return now >= publish_at - schedule.create_lead


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
        key = load_signing_key(self.sealer.unseal(bytes(sealed), kid=kid))
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

    def revoke(self, kid: str, now: float) -> RevocationResult:
        """Unpublish ``kid`` at once; if it was signing, a fresh key signs from ``now``.

        ``revoked`` is False when the key was already revoked, including by another process
        deciding the same revocation at the same moment: exactly one caller gets True.
        """
        records = self.records()
        target = next((r for r in records if r.kid == kid), None)
        if target is None:
            raise NotFound(f"no signing key {kid}")
        if target.revoked_at is not None:
            return RevocationResult(target, revoked=False)
        signing = signing_record(records, now)
        if signing is not None and signing.kid == kid:
            revoked = self._revoke_signing(target, now)
        elif target.activate_at > now:
            revoked = self._revoke_pending(target, now)
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
        return RevocationResult(self.get(kid), revoked=revoked)

    def _revoke_signing(self, target: KeyRecord, now: float) -> bool:
        # The replacement takes the revoked key's place in the schedule: it signs from now and
        # retires when the revoked key would have (a pending successor keeps its time).
        key = generate_signing_key()
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
        except IntegrityError:
            if self._slot_kid(f"revoke:{target.kid}") is None:
                raise
            return False  # another process revoked it at the same moment and made the replacement
        logger.warning("revoked signing key %s; %s signs from now", target.kid, key.kid)
        return True

    def _revoke_pending(self, target: KeyRecord, now: float) -> bool:
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
        return True


class KeyRing:
    """The issuer process's in-memory view: loaded signers and the encoded JWKS.

    ``reload`` re-reads the schedule (cheap: no private key material) and loads a private key
    only the first time its ``kid`` is needed, so a PEM is parsed once per key per process.
    """

    def __init__(
        self, repo: KeyRepository, *, jwks_max_age: int, clock: Clock = system_clock
    ) -> None:
        self.repo = repo
        self.jwks_max_age = jwks_max_age
        self.clock = clock
        self._records: list[KeyRecord] = []
        self._signers: dict[str, TokenSigner] = {}
        self._lock = threading.Lock()
        self._jwks_cache: tuple[tuple[str, ...], bytes, str] | None = None
        self._verification_keys: dict[str, VerificationKey] = {}

    @property
    def records(self) -> list[KeyRecord]:
        return list(self._records)

    def reload(self) -> None:
        records = self.repo.records()
        now = self.clock()
        current = signing_record(records, now)
        upcoming = [r for r in records if r.state(now) == "published"]
        with self._lock:
            self._records = records
            for record in [current, *upcoming]:
                if record is not None and record.kid not in self._signers:
                    self._signers[record.kid] = TokenSigner(self.repo.load_private(record.kid))
            live = {r.kid for r in records if r.state(now) in {"active", "published"}}
            for kid in list(self._signers):
                if kid not in live:
                    del self._signers[kid]

    def verification_key(self, kid: str) -> VerificationKey | None:
        """A published key, for verifying this issuer's own tokens (admin API, introspection)."""
        now = self.clock()
        for record in self._records:
            if record.kid == kid and record.is_published(now):
                return self._verification_keys.get(kid) or self._remember_public(record)
        return None

    def _remember_public(self, record: KeyRecord) -> VerificationKey:
        key = parse_jwk(record.public_jwk)
        self._verification_keys[record.kid] = key
        return key

    def signer(self) -> TokenSigner:
        now = self.clock()
        record = signing_record(self._records, now)
        if record is None:
            # Every key was revoked or retired since the last reload: heal from the database.
            self.repo.ensure_signing_key(now)
            self.reload()
            record = signing_record(self._records, now)
            if record is None:
                raise ConfigurationError("no signing key is available")
        signer = self._signers.get(record.kid)
        if signer is None:
            self.reload()
            signer = self._signers[record.kid]
        return signer

    def jwks(self) -> tuple[bytes, str, int]:
        """The JWKS body, its ETag and the ``max-age`` it may be cached for.

        ``max-age`` never outlives the next scheduled change of the set.
        """
        now = self.clock()
        published = published_records(self._records, now)
        kids = tuple(r.kid for r in published)
        cached = self._jwks_cache
        if cached is None or cached[0] != kids:
            body = encode_jwks(build_jwks(r.public_jwk for r in published))
            cached = (kids, body, jwks_etag(body))
            self._jwks_cache = cached
        max_age = self.jwks_max_age
        change = next_change(self._records, now)
        if change is not None:
            max_age = max(0, min(max_age, int(change - now)))
        return cached[1], cached[2], max_age


@dataclass(frozen=True)
class OpenedKeys:
    """What :func:`prepare_keys` found or made (``issuer init`` reports it)."""

    repo: KeyRepository
    secret_source: str  # "ISSUER_SECRET_KEY", or the file the secret was read from or written to
    generated_secret: bool
    signing: KeyRecord | None  # None only when opened with create=False and no key signs
    created_signing_key: bool


def _stored_key_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(signing_keys)).scalar_one())


def prepare_keys(
    settings: IssuerSettings, engine: Engine, now: float, *, create: bool, announce: bool = True
) -> OpenedKeys:
    """Open the key repository of a process: the secret loaded and proven able to open the
    stored keys.

    ``create`` (``issuer serve`` and ``issuer init`` only): with no secret configured and no
    default secret file, generate that file (0600), unless the database already holds sealed
    keys (a new secret could not open them: refused); and make sure some key signs at ``now``.
    Without ``create`` (every other command) nothing is generated: a missing secret is an error
    and no key is created. ``announce``: log a warning when a secret file was generated.
    """
    default_file = settings.default_secret_key_file.absolute()
    secret = find_secret(settings.secret_key, settings.secret_key_file, default_file)
    source = (
        "ISSUER_SECRET_KEY"
        if settings.secret_key
        else str((settings.secret_key_file or default_file).absolute())
    )
    generated = False
    if secret is None:
        if not create:
            raise ConfigurationError(
                f"no key-encryption secret: ISSUER_SECRET_KEY and ISSUER_SECRET_KEY_FILE are "
                f"unset and {default_file} does not exist (`issuer init` or `issuer serve` "
                "generates it for a new store)"
            )
        if _stored_key_count(engine):
            raise ConfigurationError(
                f"the database holds signing keys but no secret opens them: ISSUER_SECRET_KEY "
                f"and ISSUER_SECRET_KEY_FILE are unset and {default_file} does not exist "
                "(restore it or set the secret the keys were sealed with)"
            )
        secret, generated = generate_secret_file(default_file)
        if generated and announce:
            logger.warning(
                "no ISSUER_SECRET_KEY set: generated %s (0600); back it up, or set "
                "ISSUER_SECRET_KEY",
                default_file,
            )
    repo = KeyRepository(
        engine,
        KeySealer(secret),
        access_token_ttl=settings.access_token_ttl,
        schedule=KeySchedule.from_settings(settings),
    )
    repo.check_secret()
    signing = signing_record(repo.records(), now)
    created = False
    if create and signing is None:
        signing = repo.ensure_signing_key(now)
        created = True
    return OpenedKeys(repo, source, generated, signing, created)


def open_key_repository(
    settings: IssuerSettings, engine: Engine, now: float, *, create: bool = True
) -> KeyRepository:
    """The key repository for a process (see :func:`prepare_keys`); ``create`` is for
    ``issuer serve`` and ``issuer init`` only."""
    return prepare_keys(settings, engine, now, create=create).repo
