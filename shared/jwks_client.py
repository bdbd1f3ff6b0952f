"""An async JWKS client with a cache that survives outages and floods of unknown ``kid`` values.

Behaviour, in the order a request meets it:

* Keys are fetched from ``jwks_url``, or from the ``jwks_uri`` of the issuer's RFC 8414
  metadata when only the issuer URL is known (``shared/jwks_fetch.py``).
* The cache lifetime follows ``Cache-Control: max-age`` clamped to ``[min_ttl, max_ttl]``; the set
  is refreshed in the background ahead of expiry and at least every ``poll_interval`` with
  ``If-None-Match``, so a key the issuer removed is dropped within one poll (plus a fetch), and
  requests never wait on a planned refresh. Both are counted from the *start* of the fetch that
  brought the set, so a slow fetch does not push the next poll; a retry after a failure waits
  ``retry_backoff`` doubling up to ``max_retry_backoff``, never longer than ``poll_interval``
  (the plan: ``shared/jwks_schedule.py``).
* A kid that leaves the set is remembered as gone (``negative_ttl``): its tokens are refused at
  once, with no fetch.
* An unknown ``kid`` causes at most one fetch per ``unknown_kid_cooldown``, shared by every
  request waiting on it; unknown kids are remembered for ``negative_ttl``; and all fetches draw
  on a budget of ``max_fetches_per_minute``.
* When a fetch fails the last good keys are kept, for at most ``max_stale`` after the last
  success; with no keys (cold start, or stale past the bound) verification fails closed with
  :class:`~shared.errors.KeysUnavailable` (503 + ``Retry-After``), never 401. A key set with no
  usable key (``{"keys": []}``, or every key skipped) is such a failure: an issuer always has a
  signing key, so it is a broken answer, not "every key revoked".
* Every fetch has a total deadline, a byte cap and a key-count cap, and follows no redirect: a
  3xx from the metadata or JWKS endpoint is a failed fetch, logged with its ``Location``.
* A signing key revoked by a pushed event (``shared/revocation_events.py``) asks
  :meth:`JWKSClient.refetch`: a fetch that starts then, so the key leaves the set at once.
* Failed fetches are counted by reason (:attr:`JWKSClient.failure_counts`, on ``/metrics``).

The client ties the parts together: it holds the keys, the negative cache and the clock, asks
:class:`~shared.jwks_schedule.RefreshSchedule` when to fetch and
:class:`~shared.jwks_fetch.JWKSFetcher` to fetch, and shares one fetch among the requests
waiting on it. Settings: :class:`~shared.jwks_settings.JWKSClientSettings`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from shared.clock import Clock, system_clock
from shared.errors import InvalidToken, KeysUnavailable
from shared.jwks import ParsedJWKS, VerificationKey
from shared.jwks_fetch import JWKSFetcher, describe_failure, failure_reason
from shared.jwks_schedule import RefreshSchedule
from shared.jwks_settings import JWKSClientSettings

logger = logging.getLogger("keyhouse.jwks_client")


@dataclass
class FetchRecord:
    at: float
    result: str  # "ok", "not_modified", or "error"
    detail: str = ""


class JWKSClient:
    """Caches the issuer's verification keys. One instance per app, owned by its lifespan."""

    def __init__(
        self,
        settings: JWKSClientSettings,
        http: httpx.AsyncClient,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._fetcher = JWKSFetcher(settings, http)
        self._schedule = RefreshSchedule(settings)
        self._keys: dict[str, VerificationKey] = {}
        self._known_since: dict[str, float] = {}  # kid -> when a fetch first brought it
        self._have_keys = False
        self._etag: str | None = None
        self._last_success: float | None = None
        self._negative: dict[str, float] = {}  # kid -> until when it is known not to exist
        self._inflight: asyncio.Task[None] | None = None
        self.last_fetch: FetchRecord | None = None
        self.fetch_counts: Counter[str] = Counter()
        self.failure_counts: Counter[str] = Counter()  # failed fetches by reason
        self.generation = 0  # bumps whenever the key set changes

    # -- public API -------------------------------------------------------------------------

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def usable(self, now: float) -> bool:
        """Cheap check for the verified-token cache's hit path.

        True while the key set is within ``max_stale``; also starts the planned background
        refresh when it is due (never waits for it), as :meth:`get_key` does.
        """
        if now >= self._schedule.refresh_at:
            self._start_background_refresh()
        last = self._last_success
        return last is not None and self._have_keys and now - last <= self.settings.max_stale

    def age(self) -> float | None:
        """Seconds since the keys were last confirmed by the issuer (200 or 304)."""
        return None if self._last_success is None else self._clock() - self._last_success

    def state(self) -> dict[str, Any]:
        """The cache state shown on ``/healthz``."""
        last = self.last_fetch
        return {
            "keys": sorted(self._keys),
            "known_since": {kid: round(at, 3) for kid, at in sorted(self._known_since.items())},
            "age_seconds": None if self.age() is None else round(self.age() or 0.0, 3),
            "usable": self._usable(),
            "jwks_url": self._fetcher.jwks_url,
            "last_fetch": None
            if last is None
            else {"result": last.result, "detail": last.detail, "at": last.at},
            "fetches": dict(self.fetch_counts),
        }

    async def get_key(self, kid: str) -> VerificationKey:
        """The key for ``kid``, fetching at most as the cache policy allows.

        Raises :class:`KeysUnavailable` when no usable key set exists, :class:`InvalidToken`
        when the set is usable but has no such ``kid``.
        """
        now = self._clock()
        if not self._usable():
            await self._fetch_blocking(now)
        elif now >= self._schedule.refresh_at:
            self._start_background_refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        return await self._unknown_kid(kid)

    async def refresh(self) -> None:
        """Fetch now (or join the fetch under way); errors are recorded, never raised."""
        task = self._inflight or self._start_fetch()
        await asyncio.shield(task)

    async def refetch(self) -> None:
        """A fetch that starts now, for news the set must reflect at once (a key revoked by a
        pushed event): a fetch already under way may have started before the news, so it is
        waited out and one more is made. Errors are recorded, never raised."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        await self.refresh()

    async def refresh_if_due(self) -> None:
        """One tick of the background loop: refresh when the planned refresh time has come."""
        if self._clock() >= self._schedule.refresh_at:
            await self.refresh()

    def seconds_until_due(self) -> float:
        return self._schedule.seconds_until_due(self._clock())

    async def run(self) -> None:
        """Background loop for the app's lifespan: refresh ahead of expiry, poll for removals."""
        while True:
            await self.refresh_if_due()
            pause = min(self.seconds_until_due(), self.settings.poll_interval)
            await asyncio.sleep(max(0.5, pause))

    async def aclose(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            await asyncio.gather(self._inflight, return_exceptions=True)

    # -- cache policy -------------------------------------------------------------------------

    def _usable(self) -> bool:
        if not self._have_keys or self._last_success is None:
            return False
        return self._clock() - self._last_success <= self.settings.max_stale

    def _retry_after(self) -> int:
        return self._schedule.retry_after(self._clock())

    async def _fetch_blocking(self, now: float) -> None:
        if self._inflight is None and self._schedule.may_fetch(now):
            self._start_fetch()
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        if not self._usable():
            raise KeysUnavailable(
                "verification keys are not available yet", retry_after=self._retry_after()
            )

    async def _unknown_kid(self, kid: str) -> VerificationKey:
        """An unknown ``kid``: join the fetch under way, or start one if cooldown and budget allow.

        A request that joined a fetch which started before its ``kid`` was published (say a
        background poll) may still start the one unknown-kid fetch of this cooldown, so the
        request that brought a genuinely new ``kid`` succeeds once that fetch lands. A flood of
        random kids shares that same fetch and then lands in the negative cache.
        """
        self._expire_negative(self._clock())
        if kid in self._negative:
            raise InvalidToken("token signed with an unknown key")
        for _ in range(2):
            now = self._clock()
            if self._inflight is not None:
                await asyncio.shield(self._inflight)
                own = False
            elif self._schedule.may_fetch_unknown_kid(now):
                await asyncio.shield(self._start_fetch())
                own = True
            else:
                break
            key = self._keys.get(kid)
            if key is not None:
                return key
            if own:  # this request's own fetch is as fresh as it gets
                break
        if not self._usable():
            raise KeysUnavailable(
                "verification keys are not available", retry_after=self._retry_after()
            )
        self._remember_unknown(kid, self._clock())
        raise InvalidToken("token signed with an unknown key")

    def _remember_unknown(self, kid: str, now: float) -> None:
        if len(self._negative) >= self.settings.negative_cache_size:
            self._negative.pop(next(iter(self._negative)))
        self._negative[kid] = now + self.settings.negative_ttl

    def _expire_negative(self, now: float) -> None:
        while self._negative:
            kid, until = next(iter(self._negative.items()))
            if until > now:
                break
            del self._negative[kid]

    def _start_background_refresh(self) -> None:
        now = self._clock()
        if self._inflight is None and self._schedule.may_fetch(now):
            self._start_fetch()

    def _start_fetch(self) -> asyncio.Task[None]:
        assert self._inflight is None
        self._schedule.fetch_started(self._clock())
        task = asyncio.get_running_loop().create_task(self._fetch_and_store())
        self._inflight = task
        task.add_done_callback(self._clear_inflight)
        return task

    def _clear_inflight(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch_and_store(self) -> None:
        started = self._clock()
        try:
            fetched = await self._fetcher.fetch(self._etag, have_keys=self._have_keys)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure keeps the last good keys; never crash a request
            self._record_failure(started, describe_failure(exc), failure_reason(exc))
            return
        now = self._clock()
        if fetched.parsed is not None:
            self._store(fetched.parsed, now)
            # A 200 without an ETag must not keep validating an older body.
            self._etag = fetched.etag
        elif fetched.etag:
            self._etag = fetched.etag
        self._have_keys = True
        self._last_success = now
        self._schedule.succeeded(started, now, fetched.cache_control)
        self.last_fetch = FetchRecord(at=now, result=fetched.status)
        self.fetch_counts[fetched.status] += 1

    def _record_failure(self, at: float, detail: str, reason: str) -> None:
        self._schedule.failed(self._clock())
        self.last_fetch = FetchRecord(at=at, result="error", detail=detail)
        self.fetch_counts["error"] += 1
        self.failure_counts[reason] += 1
        logger.warning("JWKS fetch failed (%s): %s", reason, detail)

    def _store(self, parsed: ParsedJWKS, now: float) -> None:
        if parsed.keys != self._keys:  # kid set or key material changed
            self.generation += 1
        # A kid that left the set is gone, not unknown: its tokens are refused at once, with
        # no fetch started or waited on (a revoked key's token would otherwise wait on one).
        for kid in self._keys.keys() - parsed.keys.keys():
            self._remember_unknown(kid, now)
        self._keys = dict(parsed.keys)
        self._known_since = {kid: self._known_since.get(kid, now) for kid in parsed.keys}
        # A kid that just arrived must not stay in the negative cache.
        for kid in parsed.keys:
            self._negative.pop(kid, None)
