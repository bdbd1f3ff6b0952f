"""shared/outgoing.py: what every service's outgoing client refuses to do (its CA bundle is
proven through a real TLS issuer in tests/e2e/test_tls.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.outgoing import outgoing_client


def test_no_redirect_is_followed_and_the_user_agent_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://elsewhere.test/"})

    async def go() -> httpx.Response:
        async with outgoing_client(
            transport=httpx.MockTransport(handler), timeout=1, ca_file=None, user_agent="ua-1"
        ) as http:
            return await http.get("http://service.test/x")

    response = asyncio.run(go())
    assert response.status_code == 302
    assert [str(r.url) for r in seen] == ["http://service.test/x"]
    assert seen[0].headers["user-agent"] == "ua-1"


def test_nothing_is_taken_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    http = outgoing_client(transport=None, timeout=1, ca_file=None, user_agent="ua")
    assert http.trust_env is False
    asyncio.run(http.aclose())
