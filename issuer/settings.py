"""Issuer settings: one frozen dataclass, built from the environment, passed to ``create_app``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from serving.limits import ConnectionLimits
from shared.errors import ConfigurationError

DEFAULTS: dict[str, str] = {
    "ISSUER_URL": "http://127.0.0.1:8000",
    "ISSUER_DATABASE_URL": "sqlite:///var/issuer.db",
    "ISSUER_DATABASE_POOL_SIZE": "10",
    "ISSUER_ACCESS_TOKEN_TTL": "900",
    "ISSUER_REFRESH_TOKEN_TTL": "2592000",
    "ISSUER_REFRESH_TOKEN_IDLE_TTL": "1209600",
    "ISSUER_LOGIN_MAX_FAILURES": "10",
    "ISSUER_LOGIN_MAX_FAILURES_PER_ADDRESS": "100",
    "ISSUER_LOGIN_FAILURE_WINDOW": "300",
    "ISSUER_JWKS_MAX_AGE": "300",
    "ISSUER_KEY_ROTATION_INTERVAL": "2592000",
    "ISSUER_KEY_REFRESH_INTERVAL": "1",
    # Empty: ISSUER_JWKS_MAX_AGE + PUBLISH_MARGIN (see IssuerSettings.key_publish_ahead).
    "ISSUER_KEY_PUBLISH_AHEAD": "",
    "ISSUER_KEY_RETIRE_MARGIN": "60",
    "ISSUER_MAX_BODY_BYTES": "16384",
    "ISSUER_LOG_LEVEL": "info",
}


def _int(env: Mapping[str, str], name: str, *, minimum: int = 0) -> int:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, *, minimum: float = 0.0) -> float:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


# The default publish-ahead is one JWKS max-age plus this margin: a verifier that fetched the set
# just before the next key was published still learns it before it signs.
PUBLISH_MARGIN = 60


def _publish_ahead(env: Mapping[str, str]) -> int | None:
    if not env.get("ISSUER_KEY_PUBLISH_AHEAD", "").strip():
        return None
    return _int(env, "ISSUER_KEY_PUBLISH_AHEAD")


@dataclass(frozen=True)
class IssuerSettings:
    issuer_url: str = DEFAULTS["ISSUER_URL"]
    database_url: str = DEFAULTS["ISSUER_DATABASE_URL"]
    database_pool_size: int = 10  # connections per worker process; each request holds at most one
    access_token_ttl: int = 900
    refresh_token_ttl: int = 2_592_000  # a refresh family's absolute lifetime
    refresh_token_idle_ttl: int = 1_209_600  # each refresh token's own lifetime (idle timeout)
    login_max_failures: int = 10  # per client_id and per username, within the window
    login_max_failures_per_address: int = 100  # per client address, within the window
    login_failure_window: int = 300
    jwks_max_age: int = 300
    key_rotation_interval: int = 2_592_000
    key_refresh_interval: float = 1.0
    key_publish_ahead_override: int | None = None
    key_retire_margin: int = 60
    secret_key: str | None = None
    secret_key_file: Path | None = None
    max_body_bytes: int = 16_384
    log_level: str = "info"
    # ISSUER_HEADER_TIMEOUT, _BODY_TIMEOUT, _MAX_CONNECTIONS, _MAX_CONNECTIONS_PER_ADDRESS
    connections: ConnectionLimits = field(
        default_factory=lambda: ConnectionLimits(prefix="ISSUER_")
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> IssuerSettings:
        env = os.environ if env is None else env
        issuer_url = env.get("ISSUER_URL", DEFAULTS["ISSUER_URL"]).rstrip("/")
        if not issuer_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"ISSUER_URL must be an http(s) URL, got {issuer_url!r}")
        secret_file = env.get("ISSUER_SECRET_KEY_FILE")
        settings = cls(
            issuer_url=issuer_url,
            database_url=env.get("ISSUER_DATABASE_URL", DEFAULTS["ISSUER_DATABASE_URL"]),
            database_pool_size=_int(env, "ISSUER_DATABASE_POOL_SIZE", minimum=1),
            access_token_ttl=_int(env, "ISSUER_ACCESS_TOKEN_TTL", minimum=1),
            refresh_token_ttl=_int(env, "ISSUER_REFRESH_TOKEN_TTL", minimum=1),
            refresh_token_idle_ttl=_int(env, "ISSUER_REFRESH_TOKEN_IDLE_TTL", minimum=1),
            login_max_failures=_int(env, "ISSUER_LOGIN_MAX_FAILURES", minimum=1),
            login_max_failures_per_address=_int(
                env, "ISSUER_LOGIN_MAX_FAILURES_PER_ADDRESS", minimum=1
            ),
            login_failure_window=_int(env, "ISSUER_LOGIN_FAILURE_WINDOW", minimum=1),
            jwks_max_age=_int(env, "ISSUER_JWKS_MAX_AGE"),
            key_rotation_interval=_int(env, "ISSUER_KEY_ROTATION_INTERVAL", minimum=1),
            key_refresh_interval=_float(env, "ISSUER_KEY_REFRESH_INTERVAL", minimum=0.05),
            key_publish_ahead_override=_publish_ahead(env),
            key_retire_margin=_int(env, "ISSUER_KEY_RETIRE_MARGIN"),
            secret_key=env.get("ISSUER_SECRET_KEY") or None,
            secret_key_file=Path(secret_file) if secret_file else None,
            max_body_bytes=_int(env, "ISSUER_MAX_BODY_BYTES", minimum=256),
            log_level=env.get("ISSUER_LOG_LEVEL", DEFAULTS["ISSUER_LOG_LEVEL"]),
            connections=ConnectionLimits.from_env("ISSUER_", env),
        )
        settings = replace(settings, **overrides) if overrides else settings
        if settings.key_publish_ahead < settings.jwks_max_age:
            raise ConfigurationError(
                "ISSUER_KEY_PUBLISH_AHEAD must be at least ISSUER_JWKS_MAX_AGE "
                f"({settings.jwks_max_age}), got {settings.key_publish_ahead}"
            )
        return settings

    @property
    def key_publish_ahead(self) -> int:
        """Seconds a new key is in the JWKS before it signs (``ISSUER_KEY_PUBLISH_AHEAD``)."""
        if self.key_publish_ahead_override is not None:
            return self.key_publish_ahead_override
        return self.jwks_max_age + PUBLISH_MARGIN

    @property
    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            return Path(self.database_url[len(prefix) :])
        return None

    @property
    def default_secret_key_file(self) -> Path:
        """Where a generated key-encryption secret lives when none is configured."""
        db = self.sqlite_path
        base = db.parent if db is not None else Path("var")
        return base / "issuer-secret.key"
