"""Resource service settings: one frozen dataclass from the environment (``RESOURCE_*``)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from serving.limits import ConnectionLimits
from shared.deny_list import DEFAULT_MAX_ENTRIES as DEFAULT_DENY_LIST_SIZE
from shared.dpop import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS, normalize_htu
from shared.dpop_replay import DEFAULT_MAX_ENTRIES
from shared.errors import ConfigurationError
from shared.jwks_settings import JWKSClientSettings
from shared.security_events import EVENTS_PATH
from shared.urls import check_fetch_url

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")

# RESOURCE_JWKS_<FIELD> for every JWKSClientSettings knob (see the README's table).
JWKS_KNOBS: dict[str, str] = {
    f.name: "RESOURCE_JWKS_" + f.name.upper()
    for f in fields(JWKSClientSettings)
    if f.name not in {"issuer", "issuer_url", "jwks_url"}
}


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative")
    return value


@dataclass(frozen=True)
class ResourceSettings:
    name: str
    audience: str
    jwks: JWKSClientSettings
    token_leeway: int = 30
    max_token_bytes: int = 8192
    token_cache_size: int = 10_000
    database_path: str = ""
    ca_file: str | None = None
    log_level: str = "info"
    # DPoP (RFC 9449): RESOURCE_PUBLIC_URL, _DPOP_ALGS, _REQUIRE_DPOP, _DPOP_REPLAY_CACHE_SIZE
    public_url: str | None = None  # the base a proof's htu is checked against; None: the request's
    dpop_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    require_dpop: bool = False
    dpop_replay_cache_size: int = DEFAULT_MAX_ENTRIES
    # Pushed revocation (issue 17): RESOURCE_EVENTS, _EVENTS_URL, _DENY_LIST_SIZE,
    # _EVENTS_IDLE_TIMEOUT, _EVENTS_RETRY_BACKOFF, _EVENTS_MAX_RETRY_BACKOFF
    events: bool = True
    events_url: str = ""  # "" only when events is off
    deny_list_size: int = DEFAULT_DENY_LIST_SIZE
    events_idle_timeout: float = 30.0
    events_retry_backoff: float = 0.5
    events_max_retry_backoff: float = 10.0
    # RESOURCE_HEADER_TIMEOUT, _BODY_TIMEOUT, _MAX_CONNECTIONS, _MAX_CONNECTIONS_PER_ADDRESS
    connections: ConnectionLimits = dataclasses.field(
        default_factory=lambda: ConnectionLimits(prefix="RESOURCE_")
    )

    @property
    def issuer(self) -> str:
        return self.jwks.issuer

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ResourceSettings:
        env = dict(os.environ if env is None else env)
        for key, value in overrides.items():
            if value is not None:
                env[key] = str(value)
        name = env.get("RESOURCE_NAME", "")
        if not _NAME.match(name):
            raise ConfigurationError(
                "RESOURCE_NAME (or --name) must be a lowercase name like 'photos'"
            )
        issuer = env.get("RESOURCE_ISSUER", "http://127.0.0.1:8000").rstrip("/")
        knobs: dict[str, Any] = {}
        for field in fields(JWKSClientSettings):
            var = JWKS_KNOBS.get(field.name)
            if var and var in env:
                kind = {"float": float, "int": int, "bool": bool}[str(field.type)]
                knobs[field.name] = _parse(var, env[var], kind)
        jwks = JWKSClientSettings(
            issuer=issuer,
            issuer_url=(env.get("RESOURCE_ISSUER_URL") or issuer).rstrip("/"),
            jwks_url=env.get("RESOURCE_JWKS_URL") or None,
            **knobs,
        )
        return cls(
            name=name,
            audience=env.get("RESOURCE_AUDIENCE") or name,
            jwks=jwks,
            token_leeway=_parse(
                "RESOURCE_TOKEN_LEEWAY", env.get("RESOURCE_TOKEN_LEEWAY", "30"), int
            ),
            max_token_bytes=_parse(
                "RESOURCE_MAX_TOKEN_BYTES", env.get("RESOURCE_MAX_TOKEN_BYTES", "8192"), int
            ),
            token_cache_size=_parse(
                "RESOURCE_TOKEN_CACHE_SIZE", env.get("RESOURCE_TOKEN_CACHE_SIZE", "10000"), int
            ),
            database_path=env.get("RESOURCE_DATABASE_PATH") or f"var/{name}.db",
            ca_file=env.get("RESOURCE_JWKS_CA_FILE") or None,
            log_level=env.get("RESOURCE_LOG_LEVEL", "info"),
            public_url=_public_url(env.get("RESOURCE_PUBLIC_URL", "")),
            dpop_algorithms=_dpop_algorithms(env.get("RESOURCE_DPOP_ALGS")),
            require_dpop=_parse(
                "RESOURCE_REQUIRE_DPOP", env.get("RESOURCE_REQUIRE_DPOP", "0"), bool
            ),
            dpop_replay_cache_size=_positive(
                "RESOURCE_DPOP_REPLAY_CACHE_SIZE",
                env.get("RESOURCE_DPOP_REPLAY_CACHE_SIZE", str(DEFAULT_MAX_ENTRIES)),
            ),
            connections=ConnectionLimits.from_env("RESOURCE_", env),
            **_event_settings(env, jwks),
        )


def _event_settings(env: Mapping[str, str], jwks: JWKSClientSettings) -> dict[str, Any]:
    """RESOURCE_EVENTS (default on), RESOURCE_EVENTS_URL (default: the origin of
    RESOURCE_JWKS_URL + /events, else the issuer URL + /events; the http/https rules of the JWKS
    URL, RESOURCE_JWKS_ALLOW_HTTP included), RESOURCE_DENY_LIST_SIZE and the stream's timings."""
    enabled: bool = _parse("RESOURCE_EVENTS", env.get("RESOURCE_EVENTS", "1"), bool)
    url = env.get("RESOURCE_EVENTS_URL", "").strip()
    if url:
        check_fetch_url(url, allow_http=jwks.allow_http, what="RESOURCE_EVENTS_URL")
    elif jwks.jwks_url:
        parts = urlsplit(jwks.jwks_url)
        url = f"{parts.scheme}://{parts.netloc}{EVENTS_PATH}"
    else:
        url = (jwks.issuer_url or jwks.issuer).rstrip("/") + EVENTS_PATH
    timings = {}
    for field, var, default in (
        ("events_idle_timeout", "RESOURCE_EVENTS_IDLE_TIMEOUT", "30"),
        ("events_retry_backoff", "RESOURCE_EVENTS_RETRY_BACKOFF", "0.5"),
        ("events_max_retry_backoff", "RESOURCE_EVENTS_MAX_RETRY_BACKOFF", "10"),
    ):
        value: float = _parse(var, env.get(var, default), float)
        if not 0 < value < 86_400:
            raise ConfigurationError(f"{var} must be a positive number of seconds")
        timings[field] = value
    return {
        "events": enabled,
        "events_url": url if enabled else "",
        "deny_list_size": _positive(
            "RESOURCE_DENY_LIST_SIZE",
            env.get("RESOURCE_DENY_LIST_SIZE", str(DEFAULT_DENY_LIST_SIZE)),
        ),
        **timings,
    }


def _positive(name: str, raw: str) -> int:
    value: int = _parse(name, raw, int)
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1")
    return value


def _public_url(raw: str) -> str | None:
    """RESOURCE_PUBLIC_URL: the service's address as clients see it (behind a proxy), an
    absolute http(s) URL without query or fragment; a trailing ``/`` is dropped."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        normalize_htu(raw)
    except ValueError:
        raw = ""
    if not raw or "?" in raw or "#" in raw:
        raise ConfigurationError(
            "RESOURCE_PUBLIC_URL must be an absolute http(s) URL without user, query or fragment"
        )
    return raw.rstrip("/")


def _dpop_algorithms(raw: str | None) -> tuple[str, ...]:
    """RESOURCE_DPOP_ALGS: space-separated JWS algorithms accepted on DPoP proofs."""
    if raw is None:
        return DEFAULT_ALGORITHMS
    algorithms = tuple(dict.fromkeys(raw.split()))
    if not algorithms or any(a not in SUPPORTED_ALGORITHMS for a in algorithms):
        raise ConfigurationError(
            f"RESOURCE_DPOP_ALGS must be some of {' '.join(SUPPORTED_ALGORITHMS)}, got {raw!r}"
        )
    return algorithms
