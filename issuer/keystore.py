"""Signing keys: their schedule in the database and the loaded, in-memory key ring.

Each key carries ``publish_at``, ``activate_at``, ``retire_at`` and ``remove_at`` (plus
``revoked_at``); its state at any instant is a pure function of those times and the clock, so
every issuer process reading the same rows agrees on which key signs and which are published.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine, RowMapping

from issuer.db import signing_keys
from issuer.sealing import KeySealer
from shared.clock import Clock, system_clock
from shared.errors import ConfigurationError, NotFound
from shared.jwks import VerificationKey, build_jwks, encode_jwks, jwks_etag, parse_jwk
from shared.keys import SigningKey, generate_signing_key, load_signing_key
from shared.tokens import TokenSigner

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


class KeyRepository:
    """Database operations on signing keys. Synchronous; callers pick the thread."""

    def __init__(self, engine: Engine, sealer: KeySealer, *, access_token_ttl: int) -> None:
        self.engine = engine
        self.sealer = sealer
        self.access_token_ttl = access_token_ttl

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

    def create(self, now: float, *, publish_at: float, activate_at: float) -> KeyRecord:
        key = generate_signing_key()
        row = {
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
        with self.engine.begin() as conn:
            conn.execute(signing_keys.insert().values(**row))
        return self.get(key.kid)

    def get(self, kid: str) -> KeyRecord:
        for record in self.records():
            if record.kid == kid:
                return record
        raise NotFound(f"no signing key {kid}")

    def ensure_signing_key(self, now: float) -> KeyRecord:
        """Make sure some key signs at ``now`` (first start, or every key revoked)."""
        current = signing_record(self.records(), now)
        if current is not None:
            return current
        return self.create(now, publish_at=now, activate_at=now)

    def rotate(self, now: float, *, activate_at: float | None = None) -> KeyRecord:
        """Create the next key; the keys signing until it activates retire at that moment and
        stay published until every token they signed has expired (plus verifier leeway)."""
        activate = now if activate_at is None else max(now, activate_at)
        new = self.create(now, publish_at=now, activate_at=activate)
        retire_grace = self.access_token_ttl + VERIFIER_LEEWAY_MARGIN
        with self.engine.begin() as conn:
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.kid != new.kid)
                .where(signing_keys.c.revoked_at.is_(None))
                .where(signing_keys.c.activate_at <= activate)
                .where(signing_keys.c.retire_at.is_(None) | (signing_keys.c.retire_at > activate))
                .values(retire_at=activate, remove_at=activate + retire_grace)
            )
        return new

    def revoke(self, kid: str, now: float) -> KeyRecord:
        """Unpublish ``kid`` at once; if it was signing, a fresh key signs from ``now``."""
        records = self.records()
        target = next((r for r in records if r.kid == kid), None)
        if target is None:
            raise NotFound(f"no signing key {kid}")
        if target.revoked_at is not None:
            return target
        was_signing = (s := signing_record(records, now)) is not None and s.kid == kid
        with self.engine.begin() as conn:
            conn.execute(
                update(signing_keys).where(signing_keys.c.kid == kid).values(revoked_at=now)
            )
        if was_signing:
            self.ensure_signing_key(now)
        return self.get(kid)


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
