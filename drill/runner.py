"""The drill's run: load workers, token minters and ``/healthz`` watchers on every service, and
the timetable of planned rotations and the emergency revocation (see :mod:`drill`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any, TextIO

import httpx

from drill.client import StackClient, describe, error_text, kid_of
from drill.config import DrillConfig, DrillError
from drill.records import Revocation, Rotation, ServiceState
from drill.report import build_report


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
        self._stack: StackClient | None = None

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def stack(self) -> StackClient:
        assert self._stack is not None
        return self._stack

    @property
    def http(self) -> httpx.AsyncClient:
        return self.stack.http

    async def _jwks_state(self, service: ServiceState) -> dict[str, Any]:
        return await self.stack.jwks_state(service.name, service.url)

    def _elapsed(self) -> float:
        return time.time() - self.started

    # -- tasks --------------------------------------------------------------------------------

    async def _mint(self, service: ServiceState) -> None:
        cid = self.config.load_client_id or self.config.client_id
        secret = self.config.load_client_secret or self.config.client_secret
        form = {"audience": service.name}
        if self.config.scope:
            form["scope"] = self.config.scope
        token = await self.stack.token(cid, secret, **form)
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
                self._fail(f"{service.name}: {describe(exc)}", started)
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
            self._fail(f"{service.name}: {error_text(response)}", started)

    async def _watch_healthz(self, service: ServiceState) -> None:
        while not self.stop.is_set():
            try:
                jwks = await self._jwks_state(service)
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
                status = "error: " + describe(exc)
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
            out = await self.stack.admin("POST", "/admin/keys/rotate", json={"now": False})
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
        listing = await self.stack.admin("GET", "/admin/keys")
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
        out = await self.stack.admin("POST", f"/admin/keys/{kid}/revoke")
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
            self._stack = StackClient(http, cfg.issuer, cfg.client_id, cfg.client_secret)
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
                    service.fetches_after = dict(
                        (await self._jwks_state(service)).get("fetches", {})
                    )
                except (httpx.HTTPError, DrillError, ValueError) as exc:
                    self.problems.append(f"{service.name}: /healthz after the drill: {exc}")
        return self.report()

    async def _preflight(self) -> None:
        await self.stack.check_issuer()
        for service in self.services.values():
            try:
                jwks = await self._jwks_state(service)
            except (httpx.HTTPError, ValueError) as exc:
                raise DrillError(
                    f"resource {service.name} at {service.url}: {describe(exc)}"
                ) from exc
            service.fetches_before = dict(jwks.get("fetches", {}))
            await self._mint(service)
        status = await self.stack.admin("GET", "/admin/keys")
        self.schedule = dict(status.get("schedule") or {})
        signing = [k for k in status.get("keys", []) if k.get("signing")]
        self.signing_kid = str(signing[0]["kid"]) if signing else None

    def report(self) -> dict[str, Any]:
        """The verdict and everything measured: :func:`drill.report.build_report`."""
        return build_report(
            self.config,
            states=list(self.services.values()),
            rotation_log=self.rotations,
            revocation_record=self.revocation,
            failures=self.failures,
            failures_by_phase=self.failures_by_phase,
            problems=self.problems,
            schedule=self.schedule,
            duration=self._elapsed(),
        )


def run_drill(config: DrillConfig, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    return asyncio.run(Drill(config, progress=progress).run())
