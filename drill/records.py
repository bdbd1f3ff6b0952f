"""What the drill observes: per service, per planned rotation, per revocation (the key's or a
user's, with what its probes saw), and the run's per-second time series."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ServiceState:
    name: str
    url: str
    token: str | None = None
    kid: str | None = None
    tokens_by_kid: dict[str, list[str]] = field(default_factory=dict)
    # The --revoke-user user's latest access token for this service (None: none yet, or the
    # user is disabled) and the few before it, which the revocation's probes hold.
    user_token: str | None = None
    user_tokens: list[str] = field(default_factory=list)
    requests: int = 0
    ok: int = 0
    failed: int = 0
    expected_refusals: int = 0
    first_accept: dict[str, float] = field(default_factory=dict)
    kid_seen: dict[str, float] = field(default_factory=dict)
    kid_gone: dict[str, float] = field(default_factory=dict)
    fetches_before: dict[str, int] = field(default_factory=dict)
    fetches_after: dict[str, int] = field(default_factory=dict)

    def hold(self, kid: str, token: str, keep: int) -> None:
        """Remember ``token`` as one of the last ``keep`` tokens signed by ``kid``."""
        tokens = self.tokens_by_kid.setdefault(kid, [])
        tokens.append(token)
        del tokens[:-keep]


@dataclass
class ProbeRun:
    """The probes at one service for one revocation: each holds a token the revocation covers
    and sends it until the first refusal (401) or the deadline."""

    # The service's events subscription when the action was requested: its /healthz
    # "events" state ("connected", "connecting", "down", ...), "absent" without one.
    subscription: str = "absent"
    probes: int = 0
    # Per probe: when its first refusal was answered (epoch seconds), None: never refused.
    first_refusals: list[float | None] = field(default_factory=list)
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # Each probe request's round trip (answered - sent), s: how long observing a refusal took.
    round_trips: list[float] = field(default_factory=list)
    # Every answer of the first probe: (sent, answered, status), status the HTTP status as
    # text ("200", "401", "503", ...) or "error: <exception>" when none came.
    log: list[tuple[float, float, str]] = field(default_factory=list)


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
    """One action: ``kind`` "key" (``subject`` the kid) or "user" (``subject`` the username).
    ``requested_at`` is when the admin call was sent: every time is measured from it."""

    kind: str
    subject: str
    requested_at: float
    answered_at: float
    deadline: float
    replacement_kid: str | None = None
    # The claim and value its event on the issuer's stream covers ("sub" and the hashed sub,
    # "kid" and the kid), to find when that event appeared there.
    event_claim: str = ""
    event_value: str = ""
    response: dict[str, object] = field(default_factory=dict)
    runs: dict[str, ProbeRun] = field(default_factory=dict)

    @property
    def kid(self) -> str:
        return self.subject


@dataclass
class Timeline:
    """Per-second buckets (second 0 starts when the load starts) of the load's requests, its
    failures by cause and the refusals the drill expected (tokens it had revoked)."""

    started: float = 0.0
    requests: Counter[int] = field(default_factory=Counter)
    failures: dict[str, Counter[int]] = field(default_factory=dict)
    expected: Counter[int] = field(default_factory=Counter)
    # How late the drill's own event loop woke up from a 0.1 s sleep, s (a starved drill
    # observes every answer late: a reader of its refusal times must know).
    loop_lags: list[float] = field(default_factory=list)

    def bucket(self, at: float) -> int:
        return max(0, int(at - self.started))

    def request(self, at: float) -> None:
        self.requests[self.bucket(at)] += 1

    def failure(self, cause: str, at: float) -> None:
        self.failures.setdefault(cause, Counter())[self.bucket(at)] += 1

    def expected_refusal(self, at: float) -> None:
        self.expected[self.bucket(at)] += 1
