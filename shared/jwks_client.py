"""An async JWKS client with a cache that survives outages and floods of unknown ``kid`` values.

Behaviour, in the order a request meets it:

* Keys are fetched from ``jwks_url``, or from the ``jwks_uri`` of the issuer's RFC 8414
  metadata when only the issuer URL is known (the metadata's ``issuer`` must match exactly).
* The cache lifetime follows ``Cache-Control: max-age`` clamped to ``[min_ttl, max_ttl]``; the set
  is refreshed in the background ahead of expiry and at least every ``poll_interval`` with
  ``If-None-Match``, so a key the issuer removed is dropped within one poll (plus a fetch), and
  requests never wait on a planned refresh. Both are counted from the *start* of the fetch that
  brought the set, so a slow fetch does not push the next poll; a retry after a failure waits
  ``retry_backoff`` doubling up to ``max_retry_backoff``, never longer than ``poll_interval``.
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
* Failed fetches are counted by reason (:attr:`JWKSClient.failure_counts`, on ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import httpx

from shared.clock import Clock, system_clock
from shared.errors import ConfigurationError, InvalidToken, JWKSError, KeysUnavailable
from shared.jwks import ParsedJWKS, VerificationKey, parse_jwks
from shared.jws import strict_json_object
from shared.protocol import METADATA_PATH
from shared.urls import check_fetch_url

logger = logging.getLogger("keyhouse.jwks_client")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")

# Why a fetch failed: the ``reason`` label of keyhouse_jwks_fetch_failures_total.
FAILURE_REASONS = (
    "no_usable_keys",  # a set with no usable key (empty, or every key skipped)
    "redirect",  # a 3xx from the metadata or JWKS endpoint (never followed)
    "status",  # any other answer than 200 (or 304)
    "invalid_document",  # not a JSON object, no keys array, over the key cap, bad metadata
    "too_large",  # over the byte cap
    "timeout",  # the total fetch deadline passed
    "unreachable",  # connection or protocol error
    "other",
)


class FetchFailed(JWKSError):
    """A fetch that failed for ``reason`` (one of :data:`FAILURE_REASONS`)."""

    def __init__(self, description: str, *, reason: str) -> None:
        super().__init__(description)
        self.reason = reason


@dataclass(frozen=True)
class JWKSClientSettings:
    """Every knob of the cache; the resource service builds this from ``RESOURCE_JWKS_*``."""

    issuer: str
    issuer_url: str | None = None
    jwks_url: str | None = None
    min_ttl: float = 30.0
    max_ttl: float = 3600.0
    default_ttl: float = 300.0
    poll_interval: float = 60.0
    refresh_ahead: float = 0.2
    unknown_kid_cooldown: float = 30.0
    negative_ttl: float = 30.0
    negative_cache_size: int = 10_000
    max_fetches_per_minute: int = 10
    retry_backoff: float = 1.0
    max_retry_backoff: float = 10.0
    max_stale: float = 86_400.0
    fetch_timeout: float = 5.0
    max_bytes: int = 65_536
    max_keys: int = 32
    allow_http: bool = False

    def __post_init__(self) -> None:
        if not (self.jwks_url or self.issuer_url or self.issuer):
            raise ConfigurationError("a JWKS URL or an issuer URL is required")
        if self.min_ttl <= 0 or self.max_ttl < self.min_ttl:
            raise ConfigurationError("JWKS TTL bounds must satisfy 0 < min <= max")
        if self.fetch_timeout <= 0 or self.max_bytes <= 0 or self.max_keys <= 0:
            raise ConfigurationError("JWKS fetch limits must be positive")
        if self.jwks_url:
            check_fetch_url(self.jwks_url, allow_http=self.allow_http, what="RESOURCE_JWKS_URL")
        else:
            check_fetch_url(
                self.issuer_url or self.issuer, allow_http=self.allow_http, what="issuer URL"
            )


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
        self._http = http
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._known_since: dict[str, float] = {}  # kid -> when a fetch first brought it
        self._have_keys = False
        self._etag: str | None = None
        self._jwks_url: str | None = settings.jwks_url
        self._last_success: float | None = None
        self._refresh_at = 0.0
        self._next_attempt = 0.0
        self._failures = 0
        self._last_unknown_fetch = -float("inf")
        self._negative: dict[str, float] = {}
        self._fetch_times: deque[float] = deque()
        self._inflight: asyncio.Task[None] | None = None
        self._logged_skips: set[str] = set()
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
        if now >= self._refresh_at:
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
            "jwks_url": self._jwks_url,
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
        elif now >= self._refresh_at:
            self._start_background_refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        return await self._unknown_kid(kid)

    async def refresh(self) -> None:
        """Fetch now (or join the fetch under way); errors are recorded, never raised."""
        task = self._inflight or self._start_fetch()
        await asyncio.shield(task)

    async def refresh_if_due(self) -> None:
        """One tick of the background loop: refresh when the planned refresh time has come."""
        if self._clock() >= self._refresh_at:
            await self.refresh()

    def seconds_until_due(self) -> float:
        return max(0.0, self._refresh_at - self._clock())

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
        return max(1, int(self._next_attempt - self._clock() + 0.999))

    async def _fetch_blocking(self, now: float) -> None:
        if self._inflight is None and now >= self._next_attempt and self._budget_allows(now):
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
            elif (
                now - self._last_unknown_fetch >= self.settings.unknown_kid_cooldown
                and self._budget_allows(now)
            ):
                self._last_unknown_fetch = now
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

    def _budget_allows(self, now: float) -> bool:
        window = self._fetch_times
        while window and window[0] <= now - 60.0:
            window.popleft()
        return len(window) < self.settings.max_fetches_per_minute

    def _start_background_refresh(self) -> None:
        now = self._clock()
        if self._inflight is None and now >= self._next_attempt and self._budget_allows(now):
            self._start_fetch()

    def _start_fetch(self) -> asyncio.Task[None]:
        assert self._inflight is None
        self._fetch_times.append(self._clock())
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
            async with asyncio.timeout(self.settings.fetch_timeout):
                result = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure keeps the last good keys; never crash a request
            self._record_failure(started, _describe(exc), _reason(exc))
            return
        now = self._clock()
        status, parsed, ttl, etag = result
        if parsed is not None:
            self._store(parsed, now)
            self._etag = etag  # a 200 without an ETag must not keep validating an older body
        elif etag:
            self._etag = etag
        self._have_keys = True
        self._last_success = now
        self._failures = 0
        self._next_attempt = now
        # The answer describes the set as it was when the fetch started: plan from then, so a
        # slow fetch (say the one an unknown kid triggered) never pushes the next poll further
        # than poll_interval from the set it saw (issue 13.9). Due at once if it took longer.
        ahead = ttl * (1.0 - self.settings.refresh_ahead)
        self._refresh_at = started + min(ahead, self.settings.poll_interval)
        self.last_fetch = FetchRecord(at=now, result=status)
        self.fetch_counts[status] += 1

    def _record_failure(self, at: float, detail: str, reason: str) -> None:
        self._failures += 1
        # Never wait longer than a poll: the promise "a removed key is dropped within one poll
        # interval" holds again one interval after the issuer recovers (issue 13.9).
        backoff = min(
            self.settings.retry_backoff * (2 ** min(self._failures - 1, 30)),
            self.settings.max_retry_backoff,
            self.settings.poll_interval,
        )
        now = self._clock()
        self._next_attempt = now + backoff
        self._refresh_at = now + backoff
        self.last_fetch = FetchRecord(at=at, result="error", detail=detail)
        self.fetch_counts["error"] += 1
        self.failure_counts[reason] += 1
        logger.warning("JWKS fetch failed (%s): %s", reason, detail)

    def _log_skipped(self, parsed: ParsedJWKS) -> None:
        for reason in parsed.skipped:
            if reason not in self._logged_skips:
                self._logged_skips.add(reason)
                logger.warning("JWKS key skipped: %s", reason)

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

    async def _fetch(self) -> tuple[str, ParsedJWKS | None, float, str | None]:
        url = self._jwks_url or await self._discover()
        headers = {"Accept": "application/json"}
        if self._etag and self._have_keys:
            headers["If-None-Match"] = self._etag
        response, body = await self._get(url, headers, "JWKS endpoint")
        ttl = self._ttl(response.headers.get("cache-control"))
        if response.status_code == 304 and self._have_keys:
            return "not_modified", None, ttl, response.headers.get("etag")
        if response.status_code != 200:
            raise FetchFailed(f"JWKS endpoint answered {response.status_code}", reason="status")
        try:
            document = strict_json_object(body)
        except ValueError as exc:
            raise JWKSError("JWKS document is not a JSON object") from exc
        parsed = parse_jwks(document, max_keys=self.settings.max_keys)
        self._log_skipped(parsed)
        if not parsed.keys:
            # An issuer always has a signing key: an empty set is a broken answer, not the
            # revocation of every key. Keep the last good keys (within max_stale).
            skipped = len(parsed.skipped)
            raise FetchFailed(
                "JWKS has no usable key"
                + (f" ({skipped} skipped)" if skipped else " (empty key set)"),
                reason="no_usable_keys",
            )
        return "ok", parsed, ttl, response.headers.get("etag")

    async def _discover(self) -> str:
        base = (self.settings.issuer_url or self.settings.issuer).rstrip("/")
        response, body = await self._get(
            base + METADATA_PATH, {"Accept": "application/json"}, "issuer metadata"
        )
        if response.status_code != 200:
            raise FetchFailed(f"issuer metadata answered {response.status_code}", reason="status")
        try:
            metadata = strict_json_object(body)
        except ValueError as exc:
            raise JWKSError("issuer metadata is not a JSON object") from exc
        # RFC 8414 §3.3: the metadata must name exactly the issuer we trust.
        if metadata.get("issuer") != self.settings.issuer:
            raise JWKSError("issuer metadata names a different issuer")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise JWKSError("issuer metadata has no jwks_uri")
        check_fetch_url(jwks_uri, allow_http=self.settings.allow_http, what="jwks_uri")
        self._jwks_url = jwks_uri
        return jwks_uri

    async def _get(
        self, url: str, headers: dict[str, str], what: str
    ) -> tuple[httpx.Response, bytes]:
        """GET with a byte cap, reading the body as a stream. A redirect is a failed fetch.

        Redirects are never followed, not even to the same origin (panva's ``jose`` does the
        same): the keys are trusted for where they were configured or discovered, and a
        compromised path or proxy on the way must not be able to point elsewhere.
        """
        request = self._http.build_request("GET", url, headers=headers)
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            # Not is_redirect: that is true for every 3xx, 304 Not Modified included.
            if response.has_redirect_location:
                location = _printable(response.headers.get("location", ""))
                raise FetchFailed(
                    f"{what} answered {response.status_code} redirecting to {location} "
                    "(redirects are not followed)",
                    reason="redirect",
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.settings.max_bytes:
                raise FetchFailed("JWKS response is larger than the byte cap", reason="too_large")
            try:
                body = response.content  # some transports hand over a body already read
            except httpx.ResponseNotRead:
                body = await self._read_capped(response)
            if len(body) > self.settings.max_bytes:
                raise FetchFailed("JWKS response is larger than the byte cap", reason="too_large")
            return response, body
        finally:
            await response.aclose()

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise FetchFailed("JWKS response is larger than the byte cap", reason="too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _ttl(self, cache_control: str | None) -> float:
        s = self.settings
        if cache_control:
            if _NO_CACHE.search(cache_control):
                return s.min_ttl
            match = _MAX_AGE.search(cache_control)
            if match:
                return float(min(max(int(match.group(1)), s.min_ttl), s.max_ttl))
        return min(max(s.default_ttl, s.min_ttl), s.max_ttl)


def _printable(text: str, limit: int = 100) -> str:
    """Attacker-chosen text (a Location header) made safe for one log line."""
    text = _UNPRINTABLE.sub("?", text[:limit]) or "(empty)"
    return text + ("..." if len(text) >= limit else "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FetchFailed):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, JWKSError):
        return "invalid_document"
    if isinstance(exc, ConfigurationError):  # a discovered jwks_uri the URL policy refuses
        return "invalid_document"
    if isinstance(exc, httpx.HTTPError | OSError):
        return "unreachable"
    return "other"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "fetch deadline exceeded"
    if isinstance(exc, JWKSError | ConfigurationError):
        return exc.description
    if isinstance(exc, httpx.HTTPError | OSError):
        return f"{type(exc).__name__}: could not reach the issuer"
    return f"{type(exc).__name__}: unexpected error while fetching keys"
