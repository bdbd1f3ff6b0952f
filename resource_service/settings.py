"""Resource service settings: one frozen dataclass from the environment (``RESOURCE_*``)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from serving.limits import ConnectionLimits
from shared.errors import ConfigurationError
from shared.jwks_settings import JWKSClientSettings

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
            connections=ConnectionLimits.from_env("RESOURCE_", env),
        )
