"""One fetch of the issuer's key set, and what makes an answer unusable.

Keys come from ``jwks_url``, or from the ``jwks_uri`` of the issuer's RFC 8414 metadata when only
the issuer URL is known (the metadata's ``issuer`` must match exactly). Every fetch has a total
deadline, a byte cap and a key-count cap, and follows no redirect: a 3xx from the metadata or
JWKS endpoint is a failed fetch, described with its ``Location``. A key set with no usable key
(``{"keys": []}``, or every key skipped) is a failed fetch too: an issuer always has a signing
key, so it is a broken answer, not "every key revoked". Each failure has a reason from
:data:`FAILURE_REASONS` (the ``reason`` label of ``keyhouse_jwks_fetch_failures_total``).

:class:`JWKSFetcher` fetches and validates; what to keep and when to fetch again is the
client's (``shared/jwks_client.py``) and its schedule's (``shared/jwks_schedule.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import httpx

from shared.errors import ConfigurationError, JWKSError
from shared.jwks import ParsedJWKS, parse_jwks
from shared.jwks_settings import JWKSClientSettings
from shared.jws import strict_json_object
from shared.protocol import METADATA_PATH
from shared.urls import check_fetch_url

logger = logging.getLogger("keyhouse.jwks_client")

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
class Fetched:
    """A successful fetch: ``"ok"`` with the new set, or ``"not_modified"`` (a 304, no set)."""

    status: str
    parsed: ParsedJWKS | None
    cache_control: str | None
    etag: str | None


class JWKSFetcher:
    """Fetches the key set over ``http``; ``jwks_url`` is configured or, once, discovered."""

    def __init__(self, settings: JWKSClientSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self._http = http
        self.jwks_url: str | None = settings.jwks_url
        self._logged_skips: set[str] = set()

    async def fetch(self, etag: str | None, *, have_keys: bool) -> Fetched:
        """One fetch within the total deadline (discovery included); raises on any failure.

        With keys already held, ``etag`` goes out as ``If-None-Match`` and a 304 is an answer.
        """
        async with asyncio.timeout(self.settings.fetch_timeout):
            return await self._fetch(etag, have_keys)

    async def _fetch(self, etag: str | None, have_keys: bool) -> Fetched:
        url = self.jwks_url or await self._discover()
        headers = {"Accept": "application/json"}
        if etag and have_keys:
            headers["If-None-Match"] = etag
        response, body = await self._get(url, headers, "JWKS endpoint")
        cache_control = response.headers.get("cache-control")
        if response.status_code == 304 and have_keys:
            return Fetched("not_modified", None, cache_control, response.headers.get("etag"))
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
        return Fetched("ok", parsed, cache_control, response.headers.get("etag"))

    def _log_skipped(self, parsed: ParsedJWKS) -> None:
        for reason in parsed.skipped:
            if reason not in self._logged_skips:
                self._logged_skips.add(reason)
                logger.warning("JWKS key skipped: %s", reason)

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
        self.jwks_url = jwks_uri
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


def _printable(text: str, limit: int = 100) -> str:
    """Attacker-chosen text (a Location header) made safe for one log line."""
    text = _UNPRINTABLE.sub("?", text[:limit]) or "(empty)"
    return text + ("..." if len(text) >= limit else "")


def failure_reason(exc: BaseException) -> str:
    """The :data:`FAILURE_REASONS` entry for a fetch that raised ``exc``."""
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


def describe_failure(exc: BaseException) -> str:
    """One log line (and ``/healthz`` detail) for a fetch that raised ``exc``."""
    if isinstance(exc, TimeoutError):
        return "fetch deadline exceeded"
    if isinstance(exc, JWKSError | ConfigurationError):
        return exc.description
    if isinstance(exc, httpx.HTTPError | OSError):
        return f"{type(exc).__name__}: could not reach the issuer"
    return f"{type(exc).__name__}: unexpected error while fetching keys"
