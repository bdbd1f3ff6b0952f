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

from drill import revocations
from drill.client import StackClient, describe, error_text, kid_of
from drill.config import DrillConfig, DrillError
from drill.html import write_html
from drill.pacing import Pacer
from drill.records import Revocation, Rotation, ServiceState, Timeline
from drill.report import build_report
from drill.stream import StreamLog, watch

# Tokens kept per kid and service for a revocation's probes to hold (the newest ones).
HELD_TOKENS = 8


class Drill:
    def __init__(self, config: DrillConfig, *, progress: TextIO | None = None) -> None:
        self.config = config
        self.progress = progress
        self.services = {n: ServiceState(n, u) for n, u in config.resources.items()}
        self.failures: Counter[str] = Counter()
        self.failures_by_phase: Counter[str] = Counter()
        self.rotations: list[Rotation] = []
        self.revocations: list[Revocation] = []
        self.timeline = Timeline()
        self.stream = StreamLog()
        self.keys: list[dict[str, Any]] = []
        self.user_stopped = False
        self.user_disabled = False
        self.user_enabled: dict[str, Any] | None = None
        self.phase = "warm-up"
        self.started = 0.0
        self.ended: float | None = None
        self.stop = asyncio.Event()
        self.remint = asyncio.Event()
        self.problems: list[str] = []
        self.signing_kid: str | None = None
        self.schedule: dict[str, Any] = {}
        self._stack: StackClient | None = None
        self.pacer = Pacer(config.rate)

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

    async def mint(self, service: ServiceState) -> None:
        """A client-credentials token for ``service``, the one its load workers send next."""
        cid = self.config.load_client_id or self.config.client_id
        secret = self.config.load_client_secret or self.config.client_secret
        form = {"audience": service.name}
        if self.config.scope:
            form["scope"] = self.config.scope
        token = await self.stack.token(cid, secret, **form)
        kid = kid_of(token)
        service.token, service.kid = token, kid
        service.hold(kid, token, HELD_TOKENS)

    async def mint_user(self, service: ServiceState, refresh: str | None) -> str | None:
        """A token of the ``--revoke-user`` user for ``service``: the password grant first, then
        the refresh grant with ``refresh`` (no argon2 each time); the next refresh token."""
        cfg = self.config
        cid = cfg.load_client_id or cfg.client_id
        secret = cfg.load_client_secret or cfg.client_secret
        if refresh is not None:
            data = await self.stack.grant(
                cid, secret, grant_type="refresh_token", refresh_token=refresh
            )
        else:
            assert cfg.revoke_user is not None
            assert cfg.user_password is not None
            form = {
                "grant_type": "password",
                "username": cfg.revoke_user,
                "password": cfg.user_password,
                "audience": service.name,
            }
            if cfg.scope:
                form["scope"] = cfg.scope
            data = await self.stack.grant(cid, secret, **form)
        if self.user_stopped:
            return None
        token = str(data["access_token"])
        kid_of(token)  # a readable kid, as for every load token
        service.user_token = token
        service.user_tokens = [*service.user_tokens, token][-HELD_TOKENS:]
        next_refresh = data.get("refresh_token")
        return next_refresh if isinstance(next_refresh, str) else None

    def remint_now(self) -> None:
        """Every minter mints at once (a new key signs)."""
        self.remint.set()
        self.remint.clear()

    async def _minter(self, service: ServiceState) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout: Python 3.11's wait_for can swallow a cancellation that
                # arrives as the event is set.
                async with asyncio.timeout(self.config.token_interval):
                    await self.remint.wait()
            if self.stop.is_set():
                return
            try:
                await self.mint(service)
            except (DrillError, ValueError) as exc:
                self._fail("token endpoint: " + str(exc)[:120], time.time())

    async def _user_minter(self, service: ServiceState, refresh: str | None) -> None:
        while not self.stop.is_set() and not self.user_stopped:
            await asyncio.sleep(self.config.token_interval)
            if self.stop.is_set() or self.user_stopped:
                return
            try:
                refresh = await self.mint_user(service, refresh)
            except (DrillError, ValueError) as exc:
                if self.user_stopped:
                    return  # refused because the user is being disabled, as it should be
                self._fail("token endpoint: " + str(exc)[:120], time.time())
                refresh = None

    def _fail(self, cause: str, started: float) -> None:
        self.failures[cause] += 1
        self.timeline.failure(cause, started)
        revoked = any(started >= r.requested_at for r in self.revocations)
        self.failures_by_phase["after_revocation" if revoked else "rotations"] += 1

    def _expected(self, started: float, kid: str, user: bool) -> bool:
        """A refusal the drill caused: the token's key, or its user, was revoked before."""
        return any(
            started >= r.requested_at
            and ((r.kind == "key" and r.subject == kid) or (r.kind == "user" and user))
            for r in self.revocations
        )

    async def _worker(self, service: ServiceState, slot: int) -> None:
        """Calls ``/whoami`` with the service's newest token; with ``--revoke-user``, every
        other worker sends the user's token while there is one."""
        while not self.stop.is_set():
            await self.pacer.wait()  # --rate: the next slot of the shared pace
            if self.stop.is_set():
                return
            user = slot % 2 == 1 and service.user_token is not None
            token = service.user_token if user else service.token
            if token is None:
                await asyncio.sleep(0.05)
                continue
            kid = kid_of(token)
            started = time.time()
            self.timeline.request(started)
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
            if response.status_code == 401 and self._expected(started, kid, user):
                service.expected_refusals += 1
                self.timeline.expected_refusal(started)
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

    async def _loop_lag(self) -> None:
        while not self.stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.timeline.loop_lags.append(max(0.0, time.monotonic() - before - 0.1))

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

    async def wait_for_acceptance(self, kid: str, deadline: float) -> None:
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
            self.remint_now()
            await self.wait_for_acceptance(rotation.kid, time.time() + cfg.interval + 10)
            await asyncio.sleep(cfg.interval)
        if cfg.revoke_user:
            await revocations.revoke_user(self)
        if cfg.revoke:
            await revocations.revoke_key(self)

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        limits = httpx.Limits(max_connections=cfg.concurrency + 4 * len(self.services) + 8)
        async with httpx.AsyncClient(timeout=cfg.timeout, limits=limits) as http:
            self._stack = StackClient(http, cfg.issuer, cfg.client_id, cfg.client_secret)
            refresh = await self._preflight()
            self.started = self.timeline.started = time.time()
            tasks = [
                asyncio.create_task(self._progress()),
                asyncio.create_task(self._loop_lag()),
                asyncio.create_task(watch(http, cfg.issuer, self.stream)),
            ]
            for service in self.services.values():
                tasks.append(asyncio.create_task(self._minter(service)))
                tasks.append(asyncio.create_task(self._watch_healthz(service)))
                if cfg.revoke_user:
                    tasks.append(
                        asyncio.create_task(self._user_minter(service, refresh[service.name]))
                    )
            names = list(self.services)
            for i in range(cfg.concurrency):
                service = self.services[names[i % len(names)]]
                tasks.append(asyncio.create_task(self._worker(service, i // len(names))))
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
                self.ended = time.time()
                if self.user_disabled:
                    await revocations.enable_user(self)
            try:
                self.keys = list((await self.stack.admin("GET", "/admin/keys")).get("keys", []))
            except DrillError as exc:
                self.problems.append(f"the key list after the drill: {exc}")
            for service in self.services.values():
                try:
                    service.fetches_after = dict(
                        (await self._jwks_state(service)).get("fetches", {})
                    )
                except (httpx.HTTPError, DrillError, ValueError) as exc:
                    self.problems.append(f"{service.name}: /healthz after the drill: {exc}")
        return self.report()

    async def _preflight(self) -> dict[str, str | None]:
        """Checks the stack and mints the first tokens; the user's refresh token per service
        (with ``--revoke-user``: its password grant is checked here, before any load)."""
        await self.stack.check_issuer()
        for service in self.services.values():
            try:
                jwks = await self._jwks_state(service)
            except (httpx.HTTPError, ValueError) as exc:
                raise DrillError(
                    f"resource {service.name} at {service.url}: {describe(exc)}"
                ) from exc
            service.fetches_before = dict(jwks.get("fetches", {}))
            await self.mint(service)
        refresh: dict[str, str | None] = {}
        if self.config.revoke_user:
            for service in self.services.values():
                refresh[service.name] = await self.mint_user(service, None)
        status = await self.stack.admin("GET", "/admin/keys")
        self.schedule = dict(status.get("schedule") or {})
        signing = [k for k in status.get("keys", []) if k.get("signing")]
        self.signing_kid = str(signing[0]["kid"]) if signing else None
        return refresh

    def report(self) -> dict[str, Any]:
        """The verdict and everything measured: :func:`drill.report.build_report`."""
        return build_report(
            self.config,
            states=list(self.services.values()),
            rotation_log=self.rotations,
            revocations=self.revocations,
            timeline=self.timeline,
            key_list=self.keys,
            user_enabled=self.user_enabled,
            stream=self.stream,
            failures=self.failures,
            failures_by_phase=self.failures_by_phase,
            problems=self.problems,
            schedule=self.schedule,
            duration=(self.ended or time.time()) - self.started,
        )


def run_drill(config: DrillConfig, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the drill; its report, also written as HTML to ``config.html`` when set (a file
    that cannot be written fails the drill, with the reason in the report)."""
    report = asyncio.run(Drill(config, progress=progress).run())
    if config.html is not None:
        try:
            write_html(report, config.html)
        except OSError as exc:
            report["ok"] = False
            report["reasons"].append(f"cannot write --html {config.html}: {exc.strerror}")
        else:
            report["html"] = str(config.html)
    return report
