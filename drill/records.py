"""What the drill observes: per service, per planned rotation and for the revocation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServiceState:
    name: str
    url: str
    token: str | None = None
    kid: str | None = None
    tokens_by_kid: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    ok: int = 0
    failed: int = 0
    expected_refusals: int = 0
    first_accept: dict[str, float] = field(default_factory=dict)
    kid_seen: dict[str, float] = field(default_factory=dict)
    kid_gone: dict[str, float] = field(default_factory=dict)
    fetches_before: dict[str, int] = field(default_factory=dict)
    fetches_after: dict[str, int] = field(default_factory=dict)
    revoked_refused_at: float | None = None
    revoked_probes: int = 0
    # Every probe with the revoked key's token: (sent, answered, status), where status is the
    # HTTP status as text ("200", "401", "503", ...) or "error: <exception>" when none came.
    revoked_probe_log: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class Rotation:
    index: int
    previous_kid: str | None
    kid: str
    requested_at: float
    publish_at: float
    activate_at: float
    created: bool


@dataclass
class Revocation:
    kid: str
    requested_at: float
    answered_at: float
    replacement_kid: str | None
