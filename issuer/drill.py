"""``issuer drill``: key rotations and an emergency revocation under live verification load.

Against a running stack (the local one or compose), the drill

* keeps ``concurrency`` workers calling ``GET /whoami`` on every resource service named, with
  access tokens minted from the issuer every ``token_interval`` seconds (so each carries the kid
  that signs at that moment);
* performs ``rotations`` planned rotations through the admin API (published ahead, never
  ``now``), ``interval`` seconds apart, then (``revoke``) one emergency revocation of the signing
  key, while holding on to a token signed by that key and probing every service with it;
* watches each service's ``/healthz`` to see when a kid enters or leaves its JWKS cache;
* prints one progress line a second on stderr and ends with a report (a table, or JSON).

The drill fails (exit status 1) when a valid token was refused or a request failed, in
particular around a planned rotation, or when a service kept accepting the revoked key for
longer than the stated bound (the services' JWKS poll interval plus a margin).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

ADMIN_SCOPE = "issuer:admin"
ADMIN_AUDIENCE = "issuer"


class DrillError(Exception):
    """The drill could not run (bad arguments, stack unreachable, credentials refused)."""


@dataclass(frozen=True)
class DrillConfig:
    issuer: str
    resources: dict[str, str]
    client_id: str
    client_secret: str
    load_client_id: str | None = None
    load_client_secret: str | None = None
    scope: str | None = None
    rotations: int = 2
    interval: float = 10.0
    revoke: bool = False
    concurrency: int = 8
    duration: float = 0.0
    warmup: float = 2.0
    poll_interval: float = 60.0
    revocation_margin: float = 5.0
    token_interval: float = 0.5
    timeout: float = 10.0

    @property
    def revocation_bound(self) -> float:
        return self.poll_interval + self.revocation_margin


def kid_of(token: str) -> str:
    """The ``kid`` of a compact JWS, read without verification (the drill only labels)."""
    try:
        header = token.split(".", 1)[0]
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        kid = data["kid"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DrillError("the issuer returned a token without a readable kid") from exc
    if not isinstance(kid, str):
        raise DrillError("the issuer returned a token without a readable kid")
    return kid


def parse_resource(value: str) -> tuple[str, str]:
    name, sep, url = value.partition("=")
    name, url = name.strip(), url.strip().rstrip("/")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise DrillError(f"--resource must look like NAME=http://host:port, got {value!r}")
    return name, url


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


class Drill:
    def __init__(self, config: DrillConfig, *, progress: TextIO | None = None) -> None:
        self.config = config
        self.progress = progress
        self.services = {n: ServiceState(n, u) for n, u in config.resources.items()}
        self.failures: Counter[str] = Counter()
        self.failures_by_phase: Counter[str] = Counter()
        self.rotations: list[Rotation] = []
        self.revocation: Revocation | None = None
        self.revoked: set[str] = set()
        self.phase = "warm-up"
        self.started = 0.0
        self.stop = asyncio.Event()
        self.remint = asyncio.Event()
        self.problems: list[str] = []
        self.signing_kid: str | None = None
        self.schedule: dict[str, Any] = {}
        self._http: httpx.AsyncClient | None = None

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None
        return self._http

    async def _token(self, client_id: str, secret: str, **form: str) -> str:
        try:
            response = await self.http.post(
                self.config.issuer + "/token",
                data={"grant_type": "client_credentials", **form},
                auth=(client_id, secret),
            )
        except httpx.HTTPError as exc:
            raise DrillError(f"cannot reach the issuer's token endpoint: {_describe(exc)}") from exc
        if response.status_code != 200:
            raise DrillError(f"the issuer refused a token for {form}: {_error_text(response)}")
        token = response.json().get("access_token")
        if not isinstance(token, str):
            raise DrillError("the issuer's token response has no access_token")
        return token

    async def _admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        token = await self._token(
            self.config.client_id,
            self.config.client_secret,
            audience=ADMIN_AUDIENCE,
            scope=ADMIN_SCOPE,
        )
        try:
            response = await self.http.request(
                method,
                self.config.issuer + path,
                headers={"Authorization": f"Bearer {token}"},
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise DrillError(f"admin API {path}: {_describe(exc)}") from exc
        if response.status_code >= 400:
            raise DrillError(f"admin API {path} answered {_error_text(response)}")
        data = response.json()
        if not isinstance(data, dict):
            raise DrillError(f"admin API {path} answered something other than an object")
        return data

    async def _healthz(self, service: ServiceState) -> dict[str, Any]:
        response = await self.http.get(service.url + "/healthz")
        data = response.json()
        jwks = data.get("jwks") if isinstance(data, dict) else None
        if not isinstance(jwks, dict):
            raise DrillError(f"{service.name}: /healthz has no jwks state")
        return jwks

    def _elapsed(self) -> float:
        return time.time() - self.started

    # -- tasks --------------------------------------------------------------------------------

    async def _mint(self, service: ServiceState) -> None:
        cid = self.config.load_client_id or self.config.client_id
        secret = self.config.load_client_secret or self.config.client_secret
        form = {"audience": service.name}
        if self.config.scope:
            form["scope"] = self.config.scope
        token = await self._token(cid, secret, **form)
        kid = kid_of(token)
        service.token, service.kid = token, kid
        service.tokens_by_kid[kid] = token

    async def _minter(self, service: ServiceState) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.remint.wait(), self.config.token_interval)
            if self.stop.is_set():
                return
            try:
                await self._mint(service)
            except (DrillError, ValueError) as exc:
                self._fail("token endpoint: " + str(exc)[:120], time.time())

    def _fail(self, cause: str, started: float) -> None:
        self.failures[cause] += 1
        revoked_at = self.revocation.requested_at if self.revocation else None
        phase = "after_revocation" if revoked_at and started >= revoked_at else "rotations"
        self.failures_by_phase[phase] += 1

    async def _worker(self, service: ServiceState) -> None:
        while not self.stop.is_set():
            token, kid = service.token, service.kid
            if token is None or kid is None:
                await asyncio.sleep(0.05)
                continue
            started = time.time()
            try:
                response = await self.http.get(
                    service.url + "/whoami", headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                service.requests += 1
                service.failed += 1
                self._fail(f"{service.name}: {_describe(exc)}", started)
                await asyncio.sleep(0.05)
                continue
            done = time.time()
            service.requests += 1
            if response.status_code == 200:
                service.ok += 1
                service.first_accept.setdefault(kid, done)
                continue
            revocation = self.revocation
            if (
                response.status_code == 401
                and kid in self.revoked
                and revocation is not None
                and started >= revocation.requested_at
            ):
                service.expected_refusals += 1
                continue
            service.failed += 1
            self._fail(f"{service.name}: {_error_text(response)}", started)

    async def _watch_healthz(self, service: ServiceState) -> None:
        while not self.stop.is_set():
            try:
                jwks = await self._healthz(service)
            except (httpx.HTTPError, DrillError, ValueError):
                await asyncio.sleep(0.25)
                continue
            now = time.time()
            kids = set(jwks.get("keys") or [])
            # The service's own record of when a fetch brought each kid; this poll's time when
            # it has none (a service without it): a poll delayed by load would report late.
            known_since = jwks.get("known_since") or {}
            for kid in kids:
                at = known_since.get(kid)
                service.kid_seen.setdefault(kid, at if isinstance(at, int | float) else now)
            for kid in set(service.kid_seen) - kids:
                service.kid_gone.setdefault(kid, now)
            await asyncio.sleep(0.25)

    async def _progress(self) -> None:
        last = 0
        while not self.stop.is_set():
            await asyncio.sleep(1.0)
            if self.progress is None:
                continue
            total = sum(s.requests for s in self.services.values())
            ok = sum(s.ok for s in self.services.values())
            failed = sum(self.failures.values())
            kids = " ".join(f"{s.name}={(s.kid or '-')[:8]}" for s in self.services.values())
            self.progress.write(
                f"[drill {self._elapsed():5.1f}s] {self.phase:<24} requests={total} "
                f"(+{total - last}/s) ok={ok} failed={failed} kids: {kids}\n"
            )
            self.progress.flush()
            last = total

    async def _probe_revoked(self, service: ServiceState, token: str, deadline: float) -> None:
        """Send the revoked key's token until it is refused (401), recording every answer."""
        while time.time() < deadline and not self.stop.is_set():
            sent = time.time()
            try:
                response = await self.http.get(
                    service.url + "/whoami", headers={"Authorization": f"Bearer {token}"}
                )
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = "error: " + _describe(exc)
            answered = time.time()
            service.revoked_probes += 1
            service.revoked_probe_log.append((sent, answered, status))
            if status == "401":
                service.revoked_refused_at = answered
                return
            await asyncio.sleep(0.05)

    async def _wait_for_acceptance(self, kid: str, deadline: float) -> None:
        while time.time() < deadline and not self.stop.is_set():
            if all(kid in s.first_accept for s in self.services.values()):
                return
            await asyncio.sleep(0.05)

    # -- the timetable ------------------------------------------------------------------------

    async def _timetable(self) -> None:
        cfg = self.config
        await asyncio.sleep(cfg.warmup)
        for index in range(1, cfg.rotations + 1):
            self.phase = f"rotation {index}/{cfg.rotations}"
            requested = time.time()
            out = await self._admin("POST", "/admin/keys/rotate", json={"now": False})
            rotation = Rotation(
                index=index,
                previous_kid=out.get("previous_kid"),
                kid=str(out["kid"]),
                requested_at=requested,
                publish_at=float(out["publish_at"]),
                activate_at=float(out["activate_at"]),
                created=bool(out.get("created")),
            )
            self.rotations.append(rotation)
            ahead = rotation.activate_at - time.time()
            self.phase = f"rotation {index}/{cfg.rotations}: published"
            await asyncio.sleep(max(0.0, ahead))
            self.phase = f"rotation {index}/{cfg.rotations}: active"
            self.signing_kid = rotation.kid
            self.remint.set()
            self.remint.clear()
            await self._wait_for_acceptance(rotation.kid, time.time() + cfg.interval + 10)
            await asyncio.sleep(cfg.interval)
        if cfg.revoke:
            await self._revoke()

    async def _revoke(self) -> None:
        cfg = self.config
        self.phase = "revocation"
        listing = await self._admin("GET", "/admin/keys")
        signing = [k for k in listing.get("keys", []) if k.get("signing")]
        if not signing:
            raise DrillError("the issuer reports no signing key")
        kid = str(signing[0]["kid"])
        # Hold a token signed by the key about to be revoked, for every service.
        deadline = time.time() + 10
        while any(kid not in s.tokens_by_kid for s in self.services.values()):
            if time.time() > deadline:
                raise DrillError(f"no token signed by {kid} to probe the revocation with")
            for service in self.services.values():
                if kid not in service.tokens_by_kid:
                    await self._mint(service)
            await asyncio.sleep(0.05)
        held = {s.name: s.tokens_by_kid[kid] for s in self.services.values()}
        self.revoked.add(kid)
        requested = time.time()
        self.revocation = Revocation(kid, requested, requested, None)
        out = await self._admin("POST", f"/admin/keys/{kid}/revoke")
        self.revocation.answered_at = time.time()
        self.revocation.replacement_kid = out.get("signing_kid")
        self.remint.set()
        self.remint.clear()
        probe_deadline = requested + cfg.revocation_bound + 10
        await asyncio.gather(
            *(self._probe_revoked(s, held[s.name], probe_deadline) for s in self.services.values())
        )
        self.phase = "after revocation"
        if self.revocation.replacement_kid:
            await self._wait_for_acceptance(self.revocation.replacement_kid, time.time() + 10)
        await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        limits = httpx.Limits(max_connections=cfg.concurrency + 4 * len(self.services) + 8)
        async with httpx.AsyncClient(timeout=cfg.timeout, limits=limits) as http:
            self._http = http
            await self._preflight()
            self.started = time.time()
            tasks = [asyncio.create_task(self._progress())]
            for service in self.services.values():
                tasks.append(asyncio.create_task(self._minter(service)))
                tasks.append(asyncio.create_task(self._watch_healthz(service)))
            names = list(self.services)
            for i in range(cfg.concurrency):
                tasks.append(
                    asyncio.create_task(self._worker(self.services[names[i % len(names)]]))
                )
            try:
                await self._timetable()
                remaining = cfg.duration - self._elapsed()
                if remaining > 0:
                    self.phase = "steady load"
                    await asyncio.sleep(remaining)
            finally:
                self.stop.set()
                self.remint.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for service in self.services.values():
                try:
                    service.fetches_after = dict((await self._healthz(service)).get("fetches", {}))
                except (httpx.HTTPError, DrillError, ValueError) as exc:
                    self.problems.append(f"{service.name}: /healthz after the drill: {exc}")
        return self.report()

    async def _preflight(self) -> None:
        try:
            response = await self.http.get(self.config.issuer + "/healthz")
        except httpx.HTTPError as exc:
            raise DrillError(f"issuer {self.config.issuer}: {_describe(exc)}") from exc
        if response.status_code != 200:
            raise DrillError(f"issuer {self.config.issuer}/healthz answered {response.status_code}")
        for service in self.services.values():
            try:
                jwks = await self._healthz(service)
            except (httpx.HTTPError, ValueError) as exc:
                raise DrillError(
                    f"resource {service.name} at {service.url}: {_describe(exc)}"
                ) from exc
            service.fetches_before = dict(jwks.get("fetches", {}))
            await self._mint(service)
        status = await self._admin("GET", "/admin/keys")
        self.schedule = dict(status.get("schedule") or {})
        signing = [k for k in status.get("keys", []) if k.get("signing")]
        self.signing_kid = str(signing[0]["kid"]) if signing else None

    # -- the report ---------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        cfg = self.config
        services: dict[str, Any] = {}
        for s in self.services.values():
            keys = set(s.fetches_before) | set(s.fetches_after)
            services[s.name] = {
                "url": s.url,
                "requests": s.requests,
                "ok": s.ok,
                "failed": s.failed,
                "expected_refusals": s.expected_refusals,
                "jwks_fetches": {
                    "before": s.fetches_before,
                    "after": s.fetches_after,
                    "delta": {
                        k: s.fetches_after.get(k, 0) - s.fetches_before.get(k, 0)
                        for k in sorted(keys)
                    },
                },
            }
        rotations: list[dict[str, Any]] = []
        for r in self.rotations:
            per: dict[str, Any] = {}
            for s in self.services.values():
                accepted = s.first_accept.get(r.kid)
                seen = s.kid_seen.get(r.kid)
                per[s.name] = {
                    "first_accept_after_activation_s": _round(accepted, r.activate_at),
                    "first_accept_after_request_s": _round(accepted, r.requested_at),
                    "known_before_activation_s": None
                    if seen is None
                    else round(r.activate_at - seen, 3),
                }
            rotations.append(
                {
                    "index": r.index,
                    "previous_kid": r.previous_kid,
                    "kid": r.kid,
                    "created": r.created,
                    "requested_at": r.requested_at,
                    "publish_at": r.publish_at,
                    "activate_at": r.activate_at,
                    "published_ahead_s": round(
                        r.activate_at - max(r.publish_at, r.requested_at), 3
                    ),
                    "services": per,
                }
            )
        revocation: dict[str, Any] | None = None
        if self.revocation is not None:
            rv = self.revocation
            per = {}
            for s in self.services.values():
                refused = _round(s.revoked_refused_at, rv.requested_at)
                replacement = s.first_accept.get(rv.replacement_kid or "")
                accepted_at = [
                    answered for _, answered, status in s.revoked_probe_log if status == "200"
                ]
                per[s.name] = {
                    "refused_after_s": refused,
                    "within_bound": refused is not None and refused <= cfg.revocation_bound,
                    "probes": s.revoked_probes,
                    "last_accepted_after_s": _round(
                        max(accepted_at) if accepted_at else None, rv.requested_at
                    ),
                    "probe_statuses": dict(Counter(status for *_, status in s.revoked_probe_log)),
                    # Each probe: when it was sent and answered (s after the revocation request)
                    # and what it got, so a slow answer or a 503 is told apart from an acceptance.
                    "probe_log": [
                        {
                            "sent_after_s": round(sent - rv.requested_at, 3),
                            "answered_after_s": round(answered - rv.requested_at, 3),
                            "status": status,
                        }
                        for sent, answered, status in s.revoked_probe_log
                    ],
                    "left_jwks_cache_after_s": _round(s.kid_gone.get(rv.kid), rv.requested_at),
                    "replacement_accepted_after_s": _round(replacement, rv.requested_at),
                }
            revocation = {
                "kid": rv.kid,
                "replacement_kid": rv.replacement_kid,
                "requested_at": rv.requested_at,
                # How long the admin API took to revoke (the probes start after it answered).
                "admin_answered_after_s": round(rv.answered_at - rv.requested_at, 3),
                "bound_s": cfg.revocation_bound,
                "poll_interval_s": cfg.poll_interval,
                "margin_s": cfg.revocation_margin,
                "services": per,
            }
        total = sum(s.requests for s in self.services.values())
        failed = sum(self.failures.values())
        reasons = list(self.problems)
        if self.failures_by_phase.get("rotations"):
            reasons.append(
                f"{self.failures_by_phase['rotations']} failures during planned rotations"
            )
        if self.failures_by_phase.get("after_revocation"):
            reasons.append(
                f"{self.failures_by_phase['after_revocation']} valid requests failed "
                "after the revocation"
            )
        for entry in rotations:
            for name, data in entry["services"].items():
                if data["first_accept_after_activation_s"] is None:
                    reasons.append(f"{name} never accepted a token signed by {entry['kid']}")
        if revocation is not None:
            for name, data in revocation["services"].items():
                if not data["within_bound"]:
                    reasons.append(
                        f"{name} did not refuse the revoked key within {cfg.revocation_bound:g}s"
                        f" (probe saw {probe_summary(data['probe_log'])})"
                    )
        return {
            "ok": not reasons,
            "reasons": reasons,
            "issuer": cfg.issuer,
            "duration_s": round(self._elapsed(), 3),
            "schedule": self.schedule,
            "settings": {
                "rotations": cfg.rotations,
                "interval_s": cfg.interval,
                "revoke": cfg.revoke,
                "concurrency": cfg.concurrency,
                "token_interval_s": cfg.token_interval,
            },
            "requests": {
                "total": total,
                "ok": sum(s.ok for s in self.services.values()),
                "failed": failed,
                "expected_refusals": sum(s.expected_refusals for s in self.services.values()),
            },
            "failures_by_cause": dict(self.failures),
            "failures_by_phase": {
                "rotations": self.failures_by_phase.get("rotations", 0),
                "after_revocation": self.failures_by_phase.get("after_revocation", 0),
            },
            "services": services,
            "rotations": rotations,
            "revocation": revocation,
        }


def _round(at: float | None, since: float) -> float | None:
    return None if at is None else round(at - since, 3)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        desc = str(data.get("error_description", ""))[:100]
        return f"{response.status_code} {data['error']}" + (f": {desc}" if desc else "")
    return f"HTTP {response.status_code}"


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def probe_summary(log: list[dict[str, Any]]) -> str:
    """The revocation probe's answers as runs: ``200 x12 0.01-0.55s, 401 0.60s``.

    Times are when each answer arrived (seconds after the revocation was requested); a probe
    that waited long for its answer shows as a gap in the times."""
    runs: list[tuple[str, int, float, float]] = []
    for entry in log:
        status, at = entry["status"], entry["answered_after_s"]
        if runs and runs[-1][0] == status:
            first_status, count, first, _ = runs[-1]
            runs[-1] = (first_status, count + 1, first, at)
        else:
            runs.append((status, 1, at, at))
    if not runs:
        return "no answer"
    parts = []
    for status, count, first, last in runs:
        if count == 1:
            parts.append(f"{status} {first:.2f}s")
        else:
            parts.append(f"{status} x{count} {first:.2f}-{last:.2f}s")
    return ", ".join(parts)


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    req = report["requests"]
    n_rot = len(report["rotations"])
    lines.append(
        f"Keyhouse drill against {report['issuer']}: {n_rot} planned rotation(s), "
        f"{'1 revocation' if report['revocation'] else 'no revocation'}, "
        f"{report['duration_s']:.1f}s"
    )
    lines.append(
        f"requests: {req['total']}  ok: {req['ok']}  failed: {req['failed']}  "
        f"refused as expected (revoked kid): {req['expected_refusals']}"
    )
    phases = report["failures_by_phase"]
    lines.append(
        f"failures: during planned rotations {phases['rotations']}, "
        f"after the revocation {phases['after_revocation']}"
    )
    for cause, count in sorted(report["failures_by_cause"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count:>7}  {cause}")
    lines.append("")
    lines.append(
        f"{'SERVICE':<16} {'REQUESTS':>9} {'OK':>9} {'FAILED':>7} "
        f"{'JWKS 200':>9} {'JWKS 304':>9} {'JWKS ERR':>9}"
    )
    for name, s in report["services"].items():
        d = s["jwks_fetches"]["delta"]
        lines.append(
            f"{name:<16} {s['requests']:>9} {s['ok']:>9} {s['failed']:>7} "
            f"{d.get('ok', 0):>9} {d.get('not_modified', 0):>9} {d.get('error', 0):>9}"
        )
    for r in report["rotations"]:
        lines.append("")
        lines.append(
            f"rotation {r['index']}: {r['previous_kid'] or '?'} -> {r['kid']} "
            f"(published {r['published_ahead_s']:.1f}s before it signed)"
        )
        lines.append(
            f"  {'SERVICE':<16} {'KNOWN BEFORE ACTIVATION':>24} {'FIRST ACCEPTED AFTER':>21}"
        )
        for name, s in r["services"].items():
            lines.append(
                f"  {name:<16} {_fmt(s['known_before_activation_s']):>24} "
                f"{_fmt(s['first_accept_after_activation_s']):>21}"
            )
    rv = report["revocation"]
    if rv is not None:
        lines.append("")
        lines.append(
            f"revocation of {rv['kid']} (now signing: {rv['replacement_kid']}); bound "
            f"{rv['bound_s']:g}s = poll interval {rv['poll_interval_s']:g}s + margin "
            f"{rv['margin_s']:g}s; the admin API answered after "
            f"{rv['admin_answered_after_s']:.2f}s"
        )
        lines.append(
            f"  {'SERVICE':<16} {'REFUSED AFTER':>14} {'WITHIN BOUND':>13} "
            f"{'LAST ACCEPTED':>14} {'NEW KID OK AFTER':>17}  PROBE SAW"
        )
        for name, s in rv["services"].items():
            lines.append(
                f"  {name:<16} {_fmt(s['refused_after_s']):>14} "
                f"{'yes' if s['within_bound'] else 'NO':>13} "
                f"{_fmt(s['last_accepted_after_s']):>14} "
                f"{_fmt(s['replacement_accepted_after_s']):>17}  "
                f"{probe_summary(s['probe_log'])}"
            )
    lines.append("")
    if report["ok"]:
        lines.append("RESULT: PASS")
    else:
        lines.append("RESULT: FAIL - " + "; ".join(report["reasons"]))
    return "\n".join(lines) + "\n"


def run_drill(config: DrillConfig, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    return asyncio.run(Drill(config, progress=progress).run())
