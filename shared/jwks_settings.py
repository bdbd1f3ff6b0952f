"""Every knob of the JWKS cache client (``shared/jwks_client.py``), checked when built.

The resource service builds :class:`JWKSClientSettings` from ``RESOURCE_JWKS_*`` (see
``resource_service/settings.py`` and the README's table).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigurationError
from shared.urls import check_fetch_url


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
