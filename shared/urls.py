"""URL policy for fetching keys: https everywhere except loopback, unless explicitly allowed."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from shared.errors import ConfigurationError


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str, *, allow_http: bool, what: str) -> str:
    """Return ``url`` if Keyhouse may fetch keys from it, else raise :class:`ConfigurationError`.

    RFC 8414 §3 and RFC 7517 §9.3 require TLS for metadata and key sets. Plain http is accepted
    for loopback hosts (a developer's machine) or when the operator opts in (a compose network).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL: {url!r}")
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        raise ConfigurationError(
            f"{what} must use https unless the host is loopback "
            f"(set RESOURCE_JWKS_ALLOW_HTTP=1 to allow plain http): {url!r}"
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials")
    return url
