"""The JWKS cache, behaviour by behaviour, with a FakeClock and httpx.MockTransport (no sleeps)."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.clock import FakeClock
from shared.errors import ConfigurationError, InvalidToken, KeysUnavailable
from shared.jwks_client import JWKSClient
from shared.jwks_settings import JWKSClientSettings
from tests.support.jwks_fakes import ISSUER, JWKS_URL, FakeIssuer, key, make_client


async def _settle() -> None:
    """Let tasks that were just created run up to their first real wait (no wall-clock sleep)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _started(issuer: FakeIssuer, **settings: Any) -> tuple[JWKSClient, FakeClock]:
    clock = FakeClock()
    client, _ = make_client(issuer, clock, **settings)
    await client.refresh()
    return client, clock


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- lifetime, ETag, refresh ahead, poll ------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "expected_due"),
    [
        ("public, max-age=1", 30 * 0.8),  # clamped up to min_ttl
        ("public, max-age=999999", 3600 * 0.8),  # clamped down to max_ttl
        ("public, max-age=500", 500 * 0.8),
        ("no-store", 30 * 0.8),
        (None, 300 * 0.8),  # no header: default_ttl
    ],
)
def test_lifetime_follows_max_age_clamped(cache_control: str | None, expected_due: float) -> None:
    async def main() -> None:
        issuer = FakeIssuer(max_age=None)
        issuer.publish(key(0))
        if cache_control is not None:
            issuer.extra = lambda r: httpx.Response(
                200,
                content=b'{"keys":[' + _jwk_json(key(0).public_jwk()) + b"]}",
                headers={"Cache-Control": cache_control},
            )
        client, clock = await _started(issuer, poll_interval=1e6)
        assert client.seconds_until_due() == pytest.approx(expected_due)
        clock.advance(expected_due - 1)
        await client.refresh_if_due()
        assert issuer.fetches == 1
        clock.advance(1)
        await client.refresh_if_due()
        assert issuer.fetches == 2

    asyncio.run(main())


def _jwk_json(jwk: dict[str, str]) -> bytes:
    import json

    return json.dumps(jwk).encode()


def test_conditional_refresh_with_etag_and_304() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer)
        clock.advance(60)
        await client.refresh_if_due()
        assert issuer.fetches == 2
        assert issuer.requests[0].headers.get("if-none-match") is None
        assert issuer.requests[1].headers["if-none-match"].startswith('"')
        assert client.fetch_counts == {"ok": 1, "not_modified": 1}
        assert await client.get_key(key(0).kid)
        assert client.age() == 0

    asyncio.run(main())


def test_a_200_without_etag_forgets_the_old_etag() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer)
        issuer.publish(key(0), key(1))
        issuer.extra = lambda r: httpx.Response(200, content=_doc(key(0), key(1)))
        clock.advance(60)
        await client.refresh_if_due()
        issuer.extra = None
        clock.advance(60)
        await client.refresh_if_due()
        assert "if-none-match" not in issuer.requests[2].headers

    asyncio.run(main())


def _doc(*keys: Any) -> bytes:
    import json

    return json.dumps({"keys": [k.public_jwk() for k in keys]}).encode()


def test_refresh_ahead_runs_in_background_and_never_blocks_a_request() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer)
        issuer.gate = asyncio.Event()  # the issuer now stalls until released
        clock.advance(client.seconds_until_due())
        # Due: the request gets the cached key at once while the refresh starts behind it.
        found = await asyncio.wait_for(client.get_key(key(0).kid), timeout=2)
        assert found.kid == key(0).kid
        await _settle()
        assert issuer.fetches == 2
        issuer.gate.set()
        await client.refresh()
        assert client.fetch_counts["not_modified"] == 1

    asyncio.run(main())


def test_poll_drops_a_removed_key_within_the_poll_interval() -> None:
    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0), key(1))
        client, clock = await _started(issuer, poll_interval=60)
        generation = client.generation
        issuer.publish(key(0))
        clock.advance(59)
        await client.refresh_if_due()
        assert key(1).kid in client.kids  # not yet due
        clock.advance(1)
        await client.refresh_if_due()
        assert client.kids == {key(0).kid}
        assert client.generation == generation + 1
        with pytest.raises(InvalidToken):
            await client.get_key(key(1).kid)

    asyncio.run(main())


def test_state_records_when_each_kid_first_arrived() -> None:
    """``known_since`` on ``/healthz``: the fetch that first brought a kid, kept while it stays."""

    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0))
        client, clock = await _started(issuer, poll_interval=60)
        first = clock()
        assert client.state()["known_since"] == {key(0).kid: round(first, 3)}
        issuer.publish(key(0), key(1))
        clock.advance(60)
        await client.refresh_if_due()
        second = clock()
        assert client.state()["known_since"] == {
            key(0).kid: round(first, 3),
            key(1).kid: round(second, 3),
        }
        issuer.publish(key(1))
        clock.advance(60)
        await client.refresh_if_due()
        assert client.state()["known_since"] == {key(1).kid: round(second, 3)}

    asyncio.run(main())


# -- unknown kids ---------------------------------------------------------------------------------


def test_concurrent_requests_for_a_new_kid_share_one_fetch_and_succeed() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, _ = await _started(issuer)
        issuer.publish(key(0), key(1))
        issuer.gate = asyncio.Event()
        waiters = [asyncio.create_task(client.get_key(key(1).kid)) for _ in range(50)]
        await _settle()
        assert issuer.fetches == 2
        issuer.gate.set()
        found = await asyncio.gather(*waiters)
        assert {k.kid for k in found} == {key(1).kid}
        assert issuer.fetches == 2

    asyncio.run(main())


def test_new_kid_that_joined_an_older_poll_still_gets_its_own_fetch() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer)
        issuer.gate = asyncio.Event()
        clock.advance(client.seconds_until_due())
        await client.get_key(key(0).kid)  # starts the background poll (sees only key 0)
        await _settle()
        issuer.publish(key(0), key(1))  # the issuer rotates while that poll is in flight
        waiter = asyncio.create_task(client.get_key(key(1).kid))
        await _settle()
        issuer.gate.set()
        found = await asyncio.wait_for(waiter, timeout=2)
        assert found.kid == key(1).kid
        assert issuer.fetches == 3

    asyncio.run(main())


def test_unknown_kid_cooldown() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer, unknown_kid_cooldown=30, poll_interval=1e6)
        with pytest.raises(InvalidToken):
            await client.get_key("unknown-a")
        assert issuer.fetches == 2
        clock.advance(29)
        issuer.publish(key(0), key(1))
        with pytest.raises(InvalidToken):  # inside the cooldown: no fetch, even for a real kid
            await client.get_key(key(1).kid)
        assert issuer.fetches == 2
        clock.advance(1)
        with pytest.raises(InvalidToken):  # key 1 sits in the negative cache for negative_ttl
            await client.get_key(key(1).kid)
        clock.advance(30)
        assert (await client.get_key(key(1).kid)).kid == key(1).kid
        assert issuer.fetches == 3

    asyncio.run(main())


def test_negative_cache_remembers_unknown_kids_and_forgets_published_ones() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(
            issuer, unknown_kid_cooldown=0, negative_ttl=30, poll_interval=1e6
        )
        for _ in range(5):
            with pytest.raises(InvalidToken):
                await client.get_key("ghost")
        assert issuer.fetches == 2  # one fetch, then the negative cache answers
        clock.advance(31)
        with pytest.raises(InvalidToken):
            await client.get_key("ghost")
        assert issuer.fetches == 3
        # A kid in the negative cache that a later fetch brings is usable at once.
        with pytest.raises(InvalidToken):
            await client.get_key(key(1).kid)
        issuer.publish(key(0), key(1))
        await client.refresh()
        assert (await client.get_key(key(1).kid)).kid == key(1).kid

    asyncio.run(main())


def test_flood_of_random_kids_makes_at_most_one_fetch_per_cooldown() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer, unknown_kid_cooldown=30, poll_interval=1e6)
        before = issuer.fetches

        async def attempt() -> None:
            with pytest.raises(InvalidToken):
                await client.get_key(secrets.token_urlsafe(16))

        # A burst of 10,000 concurrent random kids: one shared fetch.
        await asyncio.gather(*(attempt() for _ in range(10_000)))
        assert issuer.fetches - before == 1
        # The flood continues for five minutes of clock time: one fetch per cooldown at most.
        for _ in range(300):
            clock.advance(1)
            for _ in range(10):
                await attempt()
        assert issuer.fetches - before <= 1 + 300 // 30
        assert (await client.get_key(key(0).kid)).kid == key(0).kid

    asyncio.run(main())


def test_fetch_budget_caps_fetches_per_minute() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(
            issuer, unknown_kid_cooldown=0, max_fetches_per_minute=3, poll_interval=1e6
        )
        for _ in range(100):
            clock.advance(0.5)
            with pytest.raises(InvalidToken):
                await client.get_key(secrets.token_urlsafe(8))
        # 50 s of clock time: the first fetch plus two more fill the budget of three.
        assert issuer.fetches == 3

    asyncio.run(main())


# -- outages ----------------------------------------------------------------------------------


def test_issuer_down_keeps_last_keys_until_max_stale_then_503() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer, max_stale=86_400)
        issuer.fail = True
        for _ in range(24):
            clock.advance(3599)
            await client.refresh_if_due()
            assert (await client.get_key(key(0).kid)).kid == key(0).kid
        assert client.fetch_counts["error"] >= 1
        clock.advance(86_400 - 24 * 3599 + 1)
        with pytest.raises(KeysUnavailable) as info:
            await client.get_key(key(0).kid)
        assert info.value.status_code == 503
        assert int(info.value.headers["Retry-After"]) >= 1
        issuer.fail = False  # the issuer is back: the next attempt recovers
        clock.advance(60)
        assert (await client.get_key(key(0).kid)).kid == key(0).kid

    asyncio.run(main())


def test_cold_start_without_keys_is_503_with_retry_after() -> None:
    async def main() -> None:
        issuer = FakeIssuer(fail=True)
        clock = FakeClock()
        client, _ = make_client(issuer, clock)
        await client.refresh()
        for kid in (key(0).kid, "anything"):
            with pytest.raises(KeysUnavailable) as info:
                await client.get_key(kid)
            assert info.value.status_code == 503
            assert int(info.value.headers["Retry-After"]) >= 1
        assert not client.state()["usable"]

    asyncio.run(main())


def test_cold_start_with_an_unusable_document_is_503() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.extra = lambda r: httpx.Response(200, content=b"<html>oops</html>")
        client, _ = make_client(issuer, FakeClock())
        with pytest.raises(KeysUnavailable):
            await client.get_key("k")

    asyncio.run(main())


def test_fetch_has_a_total_deadline() -> None:
    async def main() -> None:
        issuer = FakeIssuer(gate=asyncio.Event())  # never released: the issuer stalls forever
        issuer.publish(key(0))
        client, _ = make_client(issuer, FakeClock(), fetch_timeout=0.05)
        with pytest.raises(KeysUnavailable):
            await asyncio.wait_for(client.get_key(key(0).kid), timeout=5)
        assert client.last_fetch is not None
        assert client.last_fetch.detail == "fetch deadline exceeded"

    asyncio.run(main())


def test_deadline_covers_discovery_and_jwks_together() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("oauth-authorization-server"):
                return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URL})
            await gate.wait()
            raise AssertionError("unreachable")

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = JWKSClient(
            JWKSClientSettings(issuer=ISSUER, fetch_timeout=0.05), http, clock=FakeClock()
        )
        with pytest.raises(KeysUnavailable):
            await asyncio.wait_for(client.get_key("k"), timeout=5)
        assert client.last_fetch is not None
        assert client.last_fetch.detail == "fetch deadline exceeded"

    asyncio.run(main())


# -- hostile documents and transport -------------------------------------------------------------


def test_byte_cap_with_and_without_content_length() -> None:
    async def main() -> None:
        big = _doc(key(0), key(1), key(2))

        async def stream() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 100):
                yield big[i : i + 100]

        for response in (
            httpx.Response(200, content=big),
            httpx.Response(200, content=stream()),  # chunked: no Content-Length to trust
        ):
            issuer = FakeIssuer()
            issuer.extra = lambda r, resp=response: resp
            client, _ = make_client(issuer, FakeClock(), max_bytes=len(big) - 1)
            with pytest.raises(KeysUnavailable):
                await client.get_key(key(0).kid)
            assert client.last_fetch is not None
            assert "byte cap" in client.last_fetch.detail

    asyncio.run(main())


def test_key_count_cap_rejects_the_document_and_keeps_the_last_good_keys() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer, max_keys=2)
        issuer.publish(key(0), key(1), key(2))
        clock.advance(60)
        await client.refresh_if_due()
        assert client.last_fetch is not None
        assert client.last_fetch.result == "error"
        assert "cap" in client.last_fetch.detail
        assert client.kids == {key(0).kid}

    asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "https://evil.example/jwks"),  # another origin
        (301, "/keys"),  # the same origin, relative
        (307, "https://issuer.example/other/jwks.json"),  # the same origin, absolute
        (308, "/keys"),
        (303, "/keys"),
    ],
)
def test_no_redirect_is_followed_from_the_jwks_endpoint(
    status: int, location: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13.3: a redirect is a failed fetch (logged with its Location), never followed."""

    async def main() -> None:
        contacted: list[str] = []
        redirect = False

        async def handler(request: httpx.Request) -> httpx.Response:
            contacted.append(request.url.path)
            if request.url.path == "/.well-known/jwks.json":
                if redirect:
                    return httpx.Response(status, headers={"Location": location})
                return httpx.Response(200, content=_doc(key(0)))
            return httpx.Response(200, content=_doc(key(3)))  # the redirect target's key

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clock = FakeClock()
        client = JWKSClient(JWKSClientSettings(issuer=ISSUER, jwks_url=JWKS_URL), http, clock=clock)
        await client.refresh()
        assert client.kids == {key(0).kid}
        redirect = True
        clock.advance(60)
        await client.refresh_if_due()
        assert client.last_fetch is not None
        assert client.last_fetch.result == "error"
        assert location in client.last_fetch.detail
        assert client.failure_counts == {"redirect": 1}
        # The last good keys stay; the key published only at the target is never trusted.
        assert (await client.get_key(key(0).kid)).kid == key(0).kid
        with pytest.raises(InvalidToken):
            await client.get_key(key(3).kid)
        assert set(contacted) == {"/.well-known/jwks.json"}

    with caplog.at_level(logging.WARNING, logger="keyhouse.jwks_client"):
        asyncio.run(main())
    logged = [r.getMessage() for r in caplog.records if "fetch failed" in r.getMessage()]
    assert logged
    assert all(f"redirecting to {location}" in m for m in logged)


def test_no_redirect_is_followed_from_the_metadata_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        contacted: list[str] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            contacted.append(request.url.path)
            if request.url.path == "/.well-known/oauth-authorization-server":
                return httpx.Response(302, headers={"Location": "/elsewhere"})
            if request.url.path == "/elsewhere":
                return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": ISSUER + "/evil"})
            return httpx.Response(200, content=_doc(key(3)))

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = JWKSClient(JWKSClientSettings(issuer=ISSUER), http, clock=FakeClock())
        with pytest.raises(KeysUnavailable):
            await client.get_key(key(3).kid)
        assert contacted == ["/.well-known/oauth-authorization-server"]
        assert client.failure_counts == {"redirect": 1}
        assert client.last_fetch is not None
        assert "issuer metadata answered 302 redirecting to /elsewhere" in client.last_fetch.detail

    with caplog.at_level(logging.WARNING, logger="keyhouse.jwks_client"):
        asyncio.run(main())
    assert any("redirecting to /elsewhere" in r.getMessage() for r in caplog.records)


def test_a_304_is_not_taken_for_a_redirect() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer)
        clock.advance(60)
        await client.refresh_if_due()
        assert client.fetch_counts == {"ok": 1, "not_modified": 1}
        assert not client.failure_counts

    asyncio.run(main())


def test_a_location_header_is_logged_on_one_line() -> None:
    async def main() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"Location": '/a b"c' + "x" * 300})

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = JWKSClient(
            JWKSClientSettings(issuer=ISSUER, jwks_url=JWKS_URL), http, clock=FakeClock()
        )
        await client.refresh()
        assert client.last_fetch is not None
        detail = client.last_fetch.detail
        assert "/a?b?c" in detail  # the space and the quote replaced, the rest cut short
        assert len(detail) <= 200
        assert "redirects are not followed" in detail

    asyncio.run(main())


# -- a key set with no usable key (issue 13.2) -----------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}],
        [{**{"kty": "RSA", "kid": "e3", "n": "x"}, "e": "Aw"}],
    ],
    ids=["empty", "symmetric-only", "malformed-only"],
)
def test_a_set_with_no_usable_key_keeps_the_last_good_keys(
    keys: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, clock = await _started(issuer, max_stale=600)
        generation = client.generation
        issuer.keys = keys
        clock.advance(60)
        await client.refresh_if_due()
        assert client.last_fetch is not None
        assert client.last_fetch.result == "error"
        assert "no usable key" in client.last_fetch.detail
        assert client.fetch_counts["error"] == 1
        assert client.failure_counts == {"no_usable_keys": 1}
        assert client.kids == {key(0).kid}
        assert client.generation == generation
        assert (await client.get_key(key(0).kid)).kid == key(0).kid
        assert client.state()["usable"]
        # Kept only within max_stale of the last good fetch, like any other failure.
        for _ in range(12):
            clock.advance(50)
            await client.refresh_if_due()
        with pytest.raises(KeysUnavailable):
            await client.get_key(key(0).kid)
        # A good answer again: recovered.
        issuer.publish(key(0))
        clock.advance(60)
        await client.refresh()
        assert (await client.get_key(key(0).kid)).kid == key(0).kid

    with caplog.at_level(logging.WARNING, logger="keyhouse.jwks_client"):
        asyncio.run(main())
    assert any("no usable key" in r.getMessage() for r in caplog.records)


def test_a_cold_start_on_an_empty_set_is_503_not_401() -> None:
    async def main() -> None:
        issuer = FakeIssuer(keys=[])
        client, _ = make_client(issuer, FakeClock())
        await client.refresh()
        with pytest.raises(KeysUnavailable):
            await client.get_key("anything")
        assert client.failure_counts == {"no_usable_keys": 1}
        assert not client.state()["usable"]

    asyncio.run(main())


def test_an_empty_set_answering_an_unknown_kid_keeps_the_keys() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        client, _ = await _started(issuer)
        issuer.keys = []
        with pytest.raises(InvalidToken):
            await client.get_key(key(1).kid)
        assert client.kids == {key(0).kid}
        assert (await client.get_key(key(0).kid)).kid == key(0).kid

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("http://issuer.example", False, False),
        ("http://issuer.example", True, True),
        ("http://127.0.0.1:8000", False, True),
        ("http://localhost:8000", False, True),
        ("http://[::1]:8000", False, True),
        ("https://issuer.example", False, True),
        ("ftp://issuer.example", True, False),
        ("https://user:pw@issuer.example", False, False),
    ],
)
def test_plain_http_only_for_loopback_unless_allowed(url: str, allow_http: bool, ok: bool) -> None:
    for kwargs in ({"issuer_url": url}, {"jwks_url": url + "/jwks"}):
        if ok:
            JWKSClientSettings(issuer=url, allow_http=allow_http, **kwargs)
        else:
            with pytest.raises(ConfigurationError):
                JWKSClientSettings(issuer=url, allow_http=allow_http, **kwargs)


def test_discovered_jwks_uri_over_plain_http_is_refused() -> None:
    async def main() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("oauth-authorization-server"):
                return httpx.Response(
                    200, json={"issuer": ISSUER, "jwks_uri": "http://issuer.example/jwks"}
                )
            return httpx.Response(200, content=_doc(key(0)))

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = JWKSClient(JWKSClientSettings(issuer=ISSUER), http, clock=FakeClock())
        with pytest.raises(KeysUnavailable):
            await client.get_key(key(0).kid)
        assert client.last_fetch is not None
        assert "https" in client.last_fetch.detail

    asyncio.run(main())


def test_discovery_must_name_the_trusted_issuer() -> None:
    async def main() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("oauth-authorization-server"):
                return httpx.Response(200, json={"issuer": "https://other", "jwks_uri": JWKS_URL})
            return httpx.Response(200, content=_doc(key(0)))

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = JWKSClient(JWKSClientSettings(issuer=ISSUER), http, clock=FakeClock())
        with pytest.raises(KeysUnavailable):
            await client.get_key(key(0).kid)

    asyncio.run(main())


def _b64_leading_zero(signing: Any) -> str:
    """``n`` with a leading zero octet: not the minimal encoding RFC 7518 §6.3.1.1 requires."""
    n = signing.public_key.public_numbers().n
    raw = b"\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hostile_keys() -> list[dict[str, Any]]:
    good = key(0).public_jwk()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    n = small.public_numbers().n
    return [
        {**key(1).public_jwk(), "d": "AQAB"},  # private member
        {"kty": "RSA", "kid": "small", "n": _b64(n), "e": "AQAB"},  # 1024 bits
        {**key(2).public_jwk(), "kid": "e-one", "e": "AQ"},  # exponent 1
        {**key(2).public_jwk(), "kid": "e-even", "e": "AQAA"},  # even exponent
        {**key(2).public_jwk(), "kid": "e-three", "e": "Aw"},  # exponent 3 (issue 13.4)
        {**key(2).public_jwk(), "kid": "n-zero", "n": _b64_leading_zero(key(2))},
        {**key(2).public_jwk(), "kid": "hs", "alg": "HS256"},
        {**key(2).public_jwk(), "kid": "enc", "use": "enc"},
        {**key(2).public_jwk(), "kid": "ops", "key_ops": ["sign"]},
        {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {**key(2).public_jwk(), "kid": "padded", "e": "AQAB=="},
        {**key(2).public_jwk(), "kid": 7},
        {**key(2).public_jwk(), "kid": "k" * 500},
        "not an object",
        good,
    ]


def test_hostile_keys_are_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def skipped() -> list[str]:
        return [r.getMessage() for r in caplog.records if "key skipped" in r.getMessage()]

    async def main() -> None:
        issuer = FakeIssuer(keys=_hostile_keys())
        client, clock = await _started(issuer)
        assert client.kids == {key(0).kid}
        first = skipped()
        # 15 bad keys; "not an object" aside, the two without a usable kid share one reason.
        assert len(first) == 14
        assert len(set(first)) == len(first)
        issuer.keys = [*issuer.keys, {"kty": "RSA", "kid": "late"}]  # new ETag: parsed again
        clock.advance(60)
        await client.refresh_if_due()
        assert client.fetch_counts["ok"] == 2
        assert skipped()[:14] == first
        assert len(skipped()) == 15  # only the new bad key is reported
        assert "late" in skipped()[-1]
        assert (await client.get_key(key(0).kid)).kid == key(0).kid

    with caplog.at_level(logging.WARNING, logger="keyhouse.jwks_client"):
        asyncio.run(main())


def test_duplicate_kids_are_dropped_whatever_the_order() -> None:
    async def main() -> None:
        a = {**key(0).public_jwk(), "kid": "same"}
        b = {**key(1).public_jwk(), "kid": "same"}
        for keys in ([a, b, key(2).public_jwk()], [b, a, key(2).public_jwk()], [a, a]):
            issuer = FakeIssuer(keys=keys)
            client, _ = await _started(issuer)
            assert "same" not in client.kids
        issuer = FakeIssuer(keys=[a, b, key(2).public_jwk()])
        client, _ = await _started(issuer)
        assert client.kids == {key(2).kid}

    asyncio.run(main())


# -- the poll schedule around slow and failed fetches (issue 13.9) ------------------------------
#
# The drill once saw a service accept a revoked key for 7.39 s with a 1 s poll interval. With
# fast answers the cache drops a removed key within one poll (a virtual-time simulation of the
# drill's traffic never exceeded 1.3 s); what stretched it were slow or failed fetches: the next
# poll was planned from the *end* of the last fetch (a slow fetch, typically the one an unknown
# kid triggers, pushed the next poll past the interval measured from the set it saw), and after
# failures the retry waited 1, 2, 4, 8 s whatever the poll interval.


def test_a_slow_unknown_kid_fetch_does_not_push_the_next_poll_past_the_interval() -> None:
    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0), key(1))
        client, clock = await _started(issuer, poll_interval=1, unknown_kid_cooldown=0)
        clock.advance(0.5)
        issuer.gate = asyncio.Event()  # the issuer answers slowly from now on
        lookup = asyncio.create_task(client.get_key("unknown-kid"))
        await _settle()
        assert issuer.fetches == 2  # the unknown kid's fetch saw the set as it was now
        issuer.publish(key(0))  # key 1 revoked while that answer is on its way
        clock.advance(3)
        issuer.gate.set()
        issuer.gate = None
        with pytest.raises(InvalidToken):
            await lookup
        assert key(1).kid in client.kids  # the slow answer predates the revocation
        # That answer described the set 3 s ago: a poll is due now, not one interval later.
        assert client.seconds_until_due() == 0
        await client.refresh_if_due()
        assert client.kids == {key(0).kid}

    asyncio.run(main())


def test_the_next_poll_is_planned_from_the_start_of_the_fetch() -> None:
    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0))
        client, clock = await _started(issuer, poll_interval=10)
        issuer.gate = asyncio.Event()
        clock.advance(10)
        poll = asyncio.create_task(client.refresh_if_due())
        await _settle()
        clock.advance(4)  # four seconds on the way
        issuer.gate.set()
        await poll
        assert client.seconds_until_due() == pytest.approx(6)

    asyncio.run(main())


def test_retries_after_failures_never_wait_longer_than_the_poll_interval() -> None:
    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0), key(1))
        client, clock = await _started(
            issuer, poll_interval=1, retry_backoff=1, max_retry_backoff=10
        )
        issuer.fail = True
        for _ in range(4):  # backoff would have grown to 1, 2, 4, 8 s
            clock.advance(client.seconds_until_due())
            await client.refresh_if_due()
            assert client.seconds_until_due() <= 1
        assert client.fetch_counts["error"] == 4
        issuer.fail = False
        issuer.publish(key(0))  # the issuer is back, without key 1
        clock.advance(1)
        await client.refresh_if_due()
        assert client.kids == {key(0).kid}

    asyncio.run(main())


def test_a_kid_that_left_the_set_is_refused_at_once_without_a_fetch() -> None:
    """A revoked kid is known to be gone: its tokens get 401 straight away instead of waiting
    on (or starting) a fetch, as an unknown kid would."""

    async def main() -> None:
        issuer = FakeIssuer(max_age=3600)
        issuer.publish(key(0), key(1))
        client, clock = await _started(issuer, poll_interval=1, unknown_kid_cooldown=0)
        issuer.publish(key(0))
        clock.advance(1)
        await client.refresh_if_due()
        fetches = issuer.fetches
        issuer.gate = asyncio.Event()  # a fetch now would stall: none must be waited on
        with pytest.raises(InvalidToken):
            await asyncio.wait_for(client.get_key(key(1).kid), timeout=2)
        assert issuer.fetches == fetches
        issuer.gate.set()

    asyncio.run(main())


# -- refetch (a key revoked by a pushed event) ------------------------------------------------


def test_refetch_waits_out_an_older_fetch_and_fetches_again() -> None:
    async def main() -> None:
        issuer = FakeIssuer()
        issuer.publish(key(0), key(1))
        client, _ = await _started(issuer)
        issuer.gate = asyncio.Event()
        older = asyncio.create_task(client.refresh())  # arrives while key 1 is still published
        await _settle()
        issuer.publish(key(0))  # key 1 revoked
        refetch = asyncio.create_task(client.refetch())
        await _settle()
        issuer.gate.set()
        await asyncio.gather(older, refetch)
        assert issuer.fetches == 3
        assert client.kids == {key(0).kid}  # joining the older fetch alone would keep key 1

    asyncio.run(main())
