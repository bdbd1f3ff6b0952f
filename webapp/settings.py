"""The web app's settings: one frozen dataclass from the environment (``WEBAPP_*``).

Two issuer addresses, as the resource service has: ``WEBAPP_ISSUER`` is the issuer's public
base URL, the exact ``iss`` its tokens carry and where the browser is sent (``/authorize``,
``/logout``); ``WEBAPP_ISSUER_URL`` is where the web app itself reaches it (``/token``,
``/revoke``, the JWKS), by default the same. In a compose network the two differ.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from serving.limits import ConnectionLimits
from shared.errors import ConfigurationError, InvalidScope
from shared.scopes import format_scope, parse_scope
from shared.urls import is_loopback_host

DEFAULT_PORT = 8003
DEFAULT_CLIENT_ID = "demo-webapp"
DEFAULT_SCOPE = "openid profile photos:read photos:write contacts:read contacts:write"
CALLBACK_PATH = "/callback"
SIGNED_OUT_PATH = "/signed-out"


def _url(env: Mapping[str, str], name: str, default: str, *, allow_http: bool) -> str:
    """An absolute http(s) base URL without credentials, query or fragment; plain http only
    for a loopback host or with WEBAPP_ALLOW_HTTP (the client secret and tokens travel on it)."""
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must have no credentials, query or fragment: {raw!r}")
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        raise ConfigurationError(
            f"{name} must use https unless the host is loopback "
            f"(set WEBAPP_ALLOW_HTTP=1 to allow plain http inside a private network): {raw!r}"
        )
    return raw.rstrip("/")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value


def _secret(env: Mapping[str, str]) -> str:
    """WEBAPP_CLIENT_SECRET, or the contents of the file WEBAPP_CLIENT_SECRET_FILE names (one
    trailing newline ignored); exactly one of the two."""
    value = env.get("WEBAPP_CLIENT_SECRET", "")
    path = env.get("WEBAPP_CLIENT_SECRET_FILE", "")
    if value and path:
        raise ConfigurationError("set WEBAPP_CLIENT_SECRET or WEBAPP_CLIENT_SECRET_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(
                f"WEBAPP_CLIENT_SECRET_FILE: cannot read {path}: {why}"
            ) from None
    if not value:
        raise ConfigurationError(
            "the web app's client secret is missing: set WEBAPP_CLIENT_SECRET_FILE "
            "(or WEBAPP_CLIENT_SECRET)"
        )
    if not all(0x20 <= ord(ch) <= 0x7E for ch in value):
        raise ConfigurationError("the web app's client secret must be printable ASCII")
    return value


@dataclass(frozen=True)
class WebappSettings:
    client_secret: str = dataclasses.field(repr=False)
    url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    issuer: str = "http://127.0.0.1:8000"
    issuer_url: str = "http://127.0.0.1:8000"
    client_id: str = DEFAULT_CLIENT_ID
    scope: str = DEFAULT_SCOPE
    photos_url: str = "http://127.0.0.1:8001"
    contacts_url: str = "http://127.0.0.1:8002"
    allow_http: bool = False
    ca_file: str | None = None
    http_timeout: float = 5.0
    session_idle_ttl: float = 1800.0
    session_ttl: float = 28800.0
    max_sessions: int = 10_000
    login_ttl: float = 600.0
    token_leeway: int = 30
    log_level: str = "info"
    connections: ConnectionLimits = dataclasses.field(
        default_factory=lambda: ConnectionLimits(prefix="WEBAPP_")
    )

    @property
    def redirect_uri(self) -> str:
        return self.url + CALLBACK_PATH

    @property
    def post_logout_redirect_uri(self) -> str:
        return self.url + SIGNED_OUT_PATH

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def issuer_origin(self) -> str:
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebappSettings:
        env = dict(os.environ if env is None else env)
        for key, value in overrides.items():
            if value is not None:
                env[key] = str(value)
        allow_http = _bool(env, "WEBAPP_ALLOW_HTTP", False)
        url = _url(env, "WEBAPP_URL", f"http://127.0.0.1:{DEFAULT_PORT}", allow_http=False)
        if urlsplit(url).path:
            raise ConfigurationError(f"WEBAPP_URL must be an origin with no path, got {url!r}")
        issuer = _url(env, "WEBAPP_ISSUER", "http://127.0.0.1:8000", allow_http=allow_http)
        try:
            scopes = parse_scope(env.get("WEBAPP_SCOPE", "").strip() or DEFAULT_SCOPE)
        except InvalidScope as exc:
            raise ConfigurationError(f"WEBAPP_SCOPE: {exc.description}") from None
        if "openid" not in scopes:
            raise ConfigurationError("WEBAPP_SCOPE must include openid (the web app signs in)")
        client_id = env.get("WEBAPP_CLIENT_ID", "").strip() or DEFAULT_CLIENT_ID
        if not all(0x21 <= ord(ch) <= 0x7E for ch in client_id):
            raise ConfigurationError("WEBAPP_CLIENT_ID must be printable ASCII without spaces")
        idle = _number(env, "WEBAPP_SESSION_IDLE_TTL", 1800.0, 1, 86_400 * 30)
        absolute = _number(env, "WEBAPP_SESSION_TTL", 28800.0, 1, 86_400 * 30)
        if idle > absolute:
            raise ConfigurationError("WEBAPP_SESSION_IDLE_TTL must not exceed WEBAPP_SESSION_TTL")
        return cls(
            client_secret=_secret(env),
            url=url,
            issuer=issuer,
            issuer_url=_url(env, "WEBAPP_ISSUER_URL", issuer, allow_http=allow_http),
            client_id=client_id,
            scope=format_scope(scopes),
            photos_url=_url(
                env, "WEBAPP_PHOTOS_URL", "http://127.0.0.1:8001", allow_http=allow_http
            ),
            contacts_url=_url(
                env, "WEBAPP_CONTACTS_URL", "http://127.0.0.1:8002", allow_http=allow_http
            ),
            allow_http=allow_http,
            ca_file=env.get("WEBAPP_CA_FILE") or None,
            http_timeout=_number(env, "WEBAPP_HTTP_TIMEOUT", 5.0, 0.1, 120),
            session_idle_ttl=idle,
            session_ttl=absolute,
            max_sessions=_count(env, "WEBAPP_MAX_SESSIONS", 10_000, 1, 10_000_000),
            login_ttl=_number(env, "WEBAPP_LOGIN_TTL", 600.0, 1, 3600),
            token_leeway=_count(env, "WEBAPP_TOKEN_LEEWAY", 30, 0, 600),
            log_level=env.get("WEBAPP_LOG_LEVEL", "info"),
            connections=ConnectionLimits.from_env("WEBAPP_", env),
        )
