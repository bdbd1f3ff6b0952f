"""Issuer settings: one frozen dataclass, built from the environment, passed to ``create_app``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from serving.limits import ConnectionLimits
from shared.dpop import SUPPORTED_ALGORITHMS as DPOP_ALGORITHMS
from shared.errors import ConfigurationError

DEFAULTS: dict[str, str] = {
    "ISSUER_URL": "http://127.0.0.1:8000",
    "ISSUER_DATABASE_URL": "sqlite:///var/issuer.db",
    "ISSUER_DATABASE_POOL_SIZE": "10",
    "ISSUER_ACCESS_TOKEN_TTL": "900",
    "ISSUER_REFRESH_TOKEN_TTL": "2592000",
    "ISSUER_REFRESH_TOKEN_IDLE_TTL": "1209600",
    "ISSUER_REFRESH_REPLAY_GRACE": "0",
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
    "ISSUER_RETRY_AFTER": "5",
    "ISSUER_SESSION_IDLE_TTL": "1800",
    "ISSUER_SESSION_TTL": "28800",
    "ISSUER_CODE_TTL": "60",
    "ISSUER_DPOP_ALGS": "ES256 RS256",
    "ISSUER_DPOP_NONCE": "0",
    "ISSUER_EVENTS_MAX_SUBSCRIBERS": "64",
    "ISSUER_EVENTS_HEARTBEAT": "10",
    "ISSUER_EVENTS_POLL_INTERVAL": "0.2",
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
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


# The longest replay grace accepted: the window exists for a retry of a refresh whose answer was
# lost (seconds after it), and every second of it is a second of weaker reuse detection.
MAX_REPLAY_GRACE = 60.0


def _replay_grace(env: Mapping[str, str]) -> float:
    name = "ISSUER_REFRESH_REPLAY_GRACE"
    value = _float(env, name)
    if not math.isfinite(value) or value > MAX_REPLAY_GRACE:
        raise ConfigurationError(
            f"{name} must be a number of seconds from 0 to {MAX_REPLAY_GRACE:g}, "
            f"got {env.get(name)!r}"
        )
    return value


# The default publish-ahead is one JWKS max-age plus this margin: a verifier that fetched the set
# just before the next key was published still learns it before it signs.
PUBLISH_MARGIN = 60


# The longest authorization-code lifetime accepted (RFC 6749 §4.1.2: "a maximum authorization
# code lifetime of 10 minutes is RECOMMENDED"); the default is 60 s.
MAX_CODE_TTL = 600


def _code_ttl(env: Mapping[str, str]) -> int:
    name = "ISSUER_CODE_TTL"
    value = _int(env, name, minimum=1)
    if value > MAX_CODE_TTL:
        raise ConfigurationError(f"{name} must be from 1 to {MAX_CODE_TTL} seconds, got {value}")
    return value


def _dpop_algs(env: Mapping[str, str]) -> tuple[str, ...]:
    """ISSUER_DPOP_ALGS: the DPoP proof algorithms /token accepts (space-separated)."""
    name = "ISSUER_DPOP_ALGS"
    algs = tuple(dict.fromkeys(env.get(name, DEFAULTS[name]).split()))
    unknown = [a for a in algs if a not in DPOP_ALGORITHMS]
    if unknown or not algs:
        raise ConfigurationError(
            f"{name} must be some of {' '.join(DPOP_ALGORITHMS)}"
            + (f" (got {unknown[0]!r})" if unknown else "")
        )
    return algs


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, DEFAULTS[name]).strip()
    if raw not in ("0", "1"):
        raise ConfigurationError(f"{name} must be 0 or 1, got {raw!r}")
    return raw == "1"


def _publish_ahead(env: Mapping[str, str]) -> int | None:
    if not env.get("ISSUER_KEY_PUBLISH_AHEAD", "").strip():
        return None
    return _int(env, "ISSUER_KEY_PUBLISH_AHEAD")


def _read_secret_file(name: str, path: str) -> str:
    """A file's text without its line ending (a password may hold any other character)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(f"{name}: cannot read {path}: {reason}") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigurationError(f"{name}: {path} is empty")
    return value


def database_url_from_env(env: Mapping[str, str]) -> str:
    """ISSUER_DATABASE_URL, or the URL in the file ISSUER_DATABASE_URL_FILE names (one of the
    two), with the password in the file ISSUER_DATABASE_PASSWORD_FILE names put into it,
    URL-escaped, when that is set (the URL then names a user but no password)."""
    url_file = env.get("ISSUER_DATABASE_URL_FILE")
    if url_file and env.get("ISSUER_DATABASE_URL"):
        raise ConfigurationError("set ISSUER_DATABASE_URL or ISSUER_DATABASE_URL_FILE, not both")
    if url_file:
        url = _read_secret_file("ISSUER_DATABASE_URL_FILE", url_file).strip()
    else:
        url = env.get("ISSUER_DATABASE_URL") or DEFAULTS["ISSUER_DATABASE_URL"]
    password_file = env.get("ISSUER_DATABASE_PASSWORD_FILE")
    if not password_file:
        return url
    password = _read_secret_file("ISSUER_DATABASE_PASSWORD_FILE", password_file)
    return with_password(url, password)


def with_password(url: str, password: str) -> str:
    """``postgresql://USER@HOST/DB`` with ``password`` (any characters) in its user info."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ConfigurationError(
            "ISSUER_DATABASE_PASSWORD_FILE needs a postgresql:// database URL, "
            f"got {scheme.split(':', 1)[0]!r}"
        )
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or not userinfo:
        raise ConfigurationError(
            "ISSUER_DATABASE_PASSWORD_FILE needs a user name in the database URL "
            "(postgresql://USER@HOST/DB)"
        )
    if ":" in userinfo:
        raise ConfigurationError(
            "the database URL already holds a password: "
            "set it there or in ISSUER_DATABASE_PASSWORD_FILE, not both"
        )
    user = quote(unquote(userinfo), safe="")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}{slash}{path}"


@dataclass(frozen=True)
class IssuerSettings:
    issuer_url: str = DEFAULTS["ISSUER_URL"]
    database_url: str = DEFAULTS["ISSUER_DATABASE_URL"]
    database_pool_size: int = 10  # connections per worker process; each request holds at most one
    access_token_ttl: int = 900
    refresh_token_ttl: int = 2_592_000  # a refresh family's absolute lifetime
    refresh_token_idle_ttl: int = 1_209_600  # each refresh token's own lifetime (idle timeout)
    # Seconds a redeemed refresh token may be presented again while its successor is unused
    # (a retry of a refresh whose answer was lost); 0: never (issuer/refresh.py).
    refresh_replay_grace: float = 0.0
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
    retry_after: int = 5  # seconds, in the Retry-After of a 503 during a database outage
    # Sign-in sessions (the login page's): ended after this long unused, and this long after
    # the login whatever happens (OWASP session management: 30 min idle, 8 h absolute).
    session_idle_ttl: int = 1800
    session_ttl: int = 28_800
    code_ttl: int = 60  # an authorization code's lifetime, 1..MAX_CODE_TTL seconds
    # DPoP (RFC 9449) at /token: the proof algorithms accepted, and server nonces on or off.
    dpop_algs: tuple[str, ...] = ("ES256", "RS256")
    dpop_nonce: bool = False
    # GET /events (issue 17): concurrent subscribers per process (beyond: 503), seconds between
    # keep-alive comments (under any proxy's idle timeout: HAProxy's ``timeout server`` is 30 s),
    # seconds between two looks at the database for events recorded elsewhere (the CLI, another
    # replica; this process's own wake the stream at once).
    events_max_subscribers: int = 64
    events_heartbeat: float = 10.0
    events_poll_interval: float = 0.2
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
            database_url=database_url_from_env(env),
            database_pool_size=_int(env, "ISSUER_DATABASE_POOL_SIZE", minimum=1),
            access_token_ttl=_int(env, "ISSUER_ACCESS_TOKEN_TTL", minimum=1),
            refresh_token_ttl=_int(env, "ISSUER_REFRESH_TOKEN_TTL", minimum=1),
            refresh_token_idle_ttl=_int(env, "ISSUER_REFRESH_TOKEN_IDLE_TTL", minimum=1),
            refresh_replay_grace=_replay_grace(env),
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
            retry_after=_int(env, "ISSUER_RETRY_AFTER", minimum=1),
            session_idle_ttl=_int(env, "ISSUER_SESSION_IDLE_TTL", minimum=1),
            session_ttl=_int(env, "ISSUER_SESSION_TTL", minimum=1),
            code_ttl=_code_ttl(env),
            dpop_algs=_dpop_algs(env),
            dpop_nonce=_flag(env, "ISSUER_DPOP_NONCE"),
            events_max_subscribers=_int(env, "ISSUER_EVENTS_MAX_SUBSCRIBERS", minimum=1),
            events_heartbeat=_float(env, "ISSUER_EVENTS_HEARTBEAT", minimum=0.05),
            events_poll_interval=_float(env, "ISSUER_EVENTS_POLL_INTERVAL", minimum=0.01),
            connections=ConnectionLimits.from_env("ISSUER_", env),
        )
        settings = replace(settings, **overrides) if overrides else settings
        if settings.key_publish_ahead < settings.jwks_max_age:
            raise ConfigurationError(
                "ISSUER_KEY_PUBLISH_AHEAD must be at least ISSUER_JWKS_MAX_AGE "
                f"({settings.jwks_max_age}), got {settings.key_publish_ahead}"
            )
        if settings.session_idle_ttl > settings.session_ttl:
            raise ConfigurationError(
                "ISSUER_SESSION_IDLE_TTL must be at most ISSUER_SESSION_TTL "
                f"({settings.session_ttl}), got {settings.session_idle_ttl}"
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
