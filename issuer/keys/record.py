"""A signing key's stored times and the state they give it at any instant.

Each key carries ``publish_at``, ``activate_at``, ``retire_at`` and ``remove_at`` (plus
``revoked_at``); its state at any instant is a pure function of those times and the clock, so
every issuer process reading the same rows agrees on which key signs and which are published.
The functions below answer those questions for a set of keys at a given instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import RowMapping


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
        """Every instant at which this key's state may change (its state is constant between
        two of them: each state test above is ``time <= now`` for one of these times)."""
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


def pending_records(records: list[KeyRecord], now: float) -> list[KeyRecord]:
    """Keys that will sign later (scheduled or published ahead), earliest activation first."""
    return sorted(
        (r for r in records if r.revoked_at is None and r.activate_at > now),
        key=lambda r: (r.activate_at, r.kid),
    )


def next_change(records: list[KeyRecord], now: float) -> float | None:
    future = [t for r in records for t in r.change_times() if t > now]
    return min(future) if future else None
