"""A load loop through the compose stack's HAProxy, for the failover test.

Threads, each with its own keep-alive client, until stopped:
- client_credentials token requests for photos and for contacts;
- password + refresh chains: a password grant, then refresh after refresh, each time with the
  refresh token the last answer gave; an answer of 503 (or none at all) retries the SAME refresh
  token, so a chain breaks only when the issuer refuses a token it handed out;
- GET /whoami at photos and at contacts with the tokens got at the start, and at contacts with
  each chain's newest access token.

Every request is recorded with the phase the test was in when it was sent. Nothing is logged
that holds a token or secret.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_PAUSE = 0.5  # after a 503 (the answer's Retry-After is longer: a test does not wait it out)


@dataclass(frozen=True)
class Outcome:
    phase: str
    kind: str
    status: int  # 0: no HTTP answer (connection error or timeout)
    error: str  # a non-200 answer's OAuth "error", or the exception's type; "" for 200
    retry_after: str | None
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def clean_503(self) -> bool:
        """What a database outage may cost: 503 temporarily_unavailable with Retry-After."""
        return (
            self.status == 503
            and self.error == "temporarily_unavailable"
            and bool(self.retry_after)
        )


class Phase:
    """The test's current phase, read by every worker when it records a request."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()

    def set(self, name: str) -> None:
        with self._lock:
            self._name = name

    def get(self) -> str:
        with self._lock:
            return self._name


@dataclass
class Chain:
    index: int
    refreshes: int = 0
    refreshes_by_phase: collections.Counter[str] = field(default_factory=collections.Counter)
    retried_same_token: int = 0
    breaks: list[str] = field(default_factory=list)


class Load:
    def __init__(
        self,
        *,
        issuer: str,
        photos: str,
        contacts: str,
        credentials: dict[str, str],
        phase: Phase,
        client: Callable[[], httpx.Client],
    ) -> None:
        self.issuer, self.photos, self.contacts = issuer, photos, contacts
        self.auth = (credentials["client_id"], credentials["client_secret"])
        self.user = (credentials["username"], credentials["password"])
        self.phase = phase
        self.client = client
        self.outcomes: list[Outcome] = []
        self.chains: list[Chain] = []
        self.crashes: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- recording -------------------------------------------------------------------------

    def _send(
        self, http: httpx.Client, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        phase, at = self.phase.get(), time.monotonic()
        try:
            resp = http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self._record(Outcome(phase, kind, 0, type(exc).__name__, None, at))
            return None
        error = ""
        if resp.status_code != 200:
            try:
                body = resp.json()
                error = str(body.get("error", "")) if isinstance(body, dict) else "not-an-object"
            except ValueError:
                error = "not-json"
        self._record(
            Outcome(phase, kind, resp.status_code, error, resp.headers.get("retry-after"), at)
        )
        return resp

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _token(self, http: httpx.Client, kind: str, form: dict[str, str]) -> httpx.Response | None:
        return self._send(http, kind, "POST", f"{self.issuer}/token", data=form, auth=self.auth)

    # -- workers ---------------------------------------------------------------------------

    def _client_credentials(self, audience: str) -> None:
        form = {
            "grant_type": "client_credentials",
            "audience": audience,
            "scope": f"{audience}:read",
        }
        with self.client() as http:
            while not self._stop.is_set():
                self._token(http, "client_credentials", form)
                self._stop.wait(0.05)

    def _whoami(self, base: str, kind: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with self.client() as http:
            while not self._stop.is_set():
                self._send(http, kind, "GET", f"{base}/whoami", headers=headers)
                self._stop.wait(0.05)

    def _chain(self, chain: Chain) -> None:
        refresh: str | None = None
        access: str | None = None
        username, password = self.user
        with self.client() as http:
            while not self._stop.is_set():
                if refresh is None:
                    form = {
                        "grant_type": "password",
                        "username": username,
                        "password": password,
                        "audience": "contacts",
                        "scope": "contacts:read",
                    }
                    resp = self._token(http, "password", form)
                else:
                    form = {"grant_type": "refresh_token", "refresh_token": refresh}
                    resp = self._token(http, "refresh", form)
                if resp is not None and resp.status_code == 200:
                    body = resp.json()
                    if refresh is not None:
                        chain.refreshes += 1
                        chain.refreshes_by_phase[self.phase.get()] += 1
                    refresh, access = body["refresh_token"], body["access_token"]
                elif resp is None or resp.status_code == 503:
                    # Not answered by the issuer: the same token again, after a pause.
                    if refresh is not None:
                        chain.retried_same_token += 1
                    self._stop.wait(RETRY_PAUSE)
                    continue
                else:
                    kind = "refresh" if refresh is not None else "password"
                    error = resp.json().get("error") if resp.content else ""
                    chain.breaks.append(f"{self.phase.get()}: {kind} {resp.status_code} {error}")
                    refresh = None  # a new chain from a password grant
                if access is not None:
                    headers = {"Authorization": f"Bearer {access}"}
                    self._send(
                        http,
                        "whoami:contacts(user)",
                        "GET",
                        f"{self.contacts}/whoami",
                        headers=headers,
                    )
                self._stop.wait(0.05)

    # -- control ---------------------------------------------------------------------------

    def _guarded(self, target: Callable[..., None], *args: object) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            except Exception as exc:  # a worker that dies must fail the test, not vanish
                with self._lock:
                    self.crashes.append(f"{target.__name__}{args[:1]}: {exc!r}")

        return run

    def start(self, *, photos_token: str, contacts_token: str, chains: int = 2) -> None:
        self.chains = [Chain(i) for i in range(chains)]
        work: list[Callable[[], None]] = [
            self._guarded(self._client_credentials, "photos"),
            self._guarded(self._client_credentials, "contacts"),
            self._guarded(self._whoami, self.photos, "whoami:photos", photos_token),
            self._guarded(self._whoami, self.contacts, "whoami:contacts", contacts_token),
            *(self._guarded(self._chain, chain) for chain in self.chains),
        ]
        self._threads = [threading.Thread(target=w, daemon=True) for w in work]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def in_phases(self, *phases: str) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.phase in phases]


def report(load: Load, phases: list[str], notes: list[str]) -> str:
    """A table: per phase and kind of request, how many and with which answers."""
    lines = ["failover report (through HAProxy)", *notes]
    for phase in phases:
        outcomes = load.in_phases(phase)
        lines.append(f"  phase {phase}: {len(outcomes)} requests")
        by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for o in outcomes:
            label = str(o.status) if o.status else f"no answer ({o.error})"
            if o.status not in (0, 200):
                label += f" {o.error}" + (" +Retry-After" if o.retry_after else "")
            by_kind[o.kind][label] += 1
        for kind in sorted(by_kind):
            counts = ", ".join(f"{n} x {label}" for label, n in by_kind[kind].most_common())
            lines.append(f"    {kind:24} {counts}")
    for chain in load.chains:
        lines.append(
            f"  chain {chain.index}: {chain.refreshes} refreshes, {chain.retried_same_token} "
            f"retries of the same refresh token after a 503, breaks: {chain.breaks or 'none'}"
        )
    if load.crashes:
        lines.append(f"  worker crashes: {load.crashes}")
    return "\n".join(lines)
