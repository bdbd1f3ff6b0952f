"""The HTTP client a service uses to call out (the issuer's JWKS, token endpoint, other
services): the transport injectable (tests), TLS verified with the system's CA bundle or a
given one, no redirects followed, nothing taken from the environment (proxies, netrc)."""

from __future__ import annotations

import ssl

import httpx


def outgoing_client(
    *,
    transport: httpx.AsyncBaseTransport | None,
    timeout: float,
    ca_file: str | None,
    user_agent: str,
) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )
