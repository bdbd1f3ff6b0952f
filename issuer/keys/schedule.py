"""When keys change: the rotation policy, and which key signs when for a known set of keys.

Pure: every function takes the instant it judges (``now``) from its caller, which reads the
injected clock; nothing here reads a clock or the database.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from issuer.keys.record import KeyRecord, pending_records, signing_record
from issuer.settings import PUBLISH_MARGIN, IssuerSettings

# Tokens are accepted up to this many seconds after ``exp`` by verifiers (their leeway); a retired
# key stays published this much longer than the tokens it signed.
VERIFIER_LEEWAY_MARGIN = 60.0


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
class SigningPlan:
    """Which key signs at any instant from ``since`` on, for one set of keys: worked out once
    when the set is read, so finding the signing key is one binary search, not a pass over
    every key's state machine.

    ``records[0]`` signs before ``starts[0]``, and ``records[i]`` from ``starts[i - 1]`` until
    ``starts[i]``. An instant before ``since`` (a clock stepped back) gets the key of ``since``.
    """

    since: float
    starts: tuple[float, ...]
    records: tuple[KeyRecord | None, ...]

    @classmethod
    def build(cls, records: list[KeyRecord], since: float) -> SigningPlan:
        # A key revoked, removed or retired at ``since`` never signs again (states only move
        # forward in time): only the others can sign, and only their times change anything.
        live = [r for r in records if r.state(since) in {"scheduled", "published", "active"}]
        starts = tuple(sorted({t for r in live for t in r.change_times() if t > since}))
        signing = (signing_record(live, since), *(signing_record(live, t) for t in starts))
        return cls(since, starts, signing)

    def at(self, now: float) -> KeyRecord | None:
        """The key that signs at ``now`` (``signing_record`` of the set, for ``now >= since``)."""
        return self.records[bisect_right(self.starts, now)]

    def signing_keys(self) -> list[KeyRecord]:
        """Every key that signs at some instant from ``since`` on, in the order they sign."""
        seen: dict[str, KeyRecord] = {}
        for record in self.records:
            if record is not None:
                seen.setdefault(record.kid, record)
        return list(seen.values())
