"""The verified-token cache: bounded LRU, exp (with leeway) honoured, purge on kid removal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

import pytest

from shared import jws
from shared.clock import FakeClock
from shared.errors import InvalidToken, KeysUnavailable
from shared.token_cache import TokenCache
from shared.verification import BearerAuthenticator
from tests.support.jwks_fakes import FakeIssuer, key, make_client, token, verifier


def _authenticator(
    issuer: FakeIssuer, clock: FakeClock, size: int = 100, **settings: object
) -> BearerAuthenticator:
    jwks, _ = make_client(issuer, clock, **settings)
    v = verifier(clock)
    return BearerAuthenticator(v, jwks, cache=TokenCache(size, leeway=v.leeway, clock=clock))


def test_hit_skips_parsing_and_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock)
        tok = token(key(0), clock)
        first = await auth.authenticate(f"Bearer {tok}")
        calls: list[str] = []

        def record(name: str) -> Callable[..., NoReturn]:
            def called(*_: object, **__: object) -> NoReturn:
                calls.append(name)
                raise AssertionError(f"{name} ran on a cache hit")

            return called

        # Every step of the slow path: splitting and decoding the token, the key lookup, the
        # signature and claims check. A hit must reach none of them.
        monkeypatch.setattr(auth.verifier, "parse_header", record("parse_header"))
        monkeypatch.setattr(auth.verifier, "parse", record("parse"))
        monkeypatch.setattr(auth.verifier, "verify", record("verify"))
        monkeypatch.setattr(auth.verifier, "check_claims", record("check_claims"))
        monkeypatch.setattr(jws, "b64url_decode", record("b64url_decode"))
        monkeypatch.setattr(jws, "strict_json_object", record("strict_json_object"))
        monkeypatch.setattr(auth.jwks, "get_key", record("get_key"))
        second = await auth.authenticate(f"bearer {tok}")
        assert second is first
        assert calls == []
        assert auth.cache.hits == 1
        assert auth.results["valid"] == 2

    asyncio.run(main())


def test_entry_valid_until_exp_plus_leeway_exactly_like_the_verifier() -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock, poll_interval=1e6, max_ttl=1e6, min_ttl=1e6)
        tok = token(key(0), clock, ttl=60)
        await auth.authenticate(f"Bearer {tok}")
        clock.advance(60 + auth.verifier.leeway - 0.001)
        await auth.authenticate(f"Bearer {tok}")
        assert auth.cache.hits == 1
        clock.advance(0.001)
        with pytest.raises(InvalidToken, match="expired"):
            await auth.authenticate(f"Bearer {tok}")
        assert len(auth.cache) == 0

    asyncio.run(main())


def test_entries_purged_when_their_kid_leaves_the_jwks() -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0), key(1))
        auth = _authenticator(issuer, clock, poll_interval=60)
        old, new = token(key(0), clock), token(key(1), clock)
        await auth.authenticate(f"Bearer {old}")
        await auth.authenticate(f"Bearer {new}")
        issuer.publish(key(1))  # the issuer revokes key 0
        clock.advance(60)
        await auth.jwks.refresh_if_due()
        with pytest.raises(InvalidToken, match="unknown key"):
            await auth.authenticate(f"Bearer {old}")
        await auth.authenticate(f"Bearer {new}")
        assert auth.cache.hits == 1  # the token of the surviving key is still a hit
        assert len(auth.cache) == 1

    asyncio.run(main())


def test_cached_tokens_fail_closed_once_keys_are_stale_past_the_bound() -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock, max_stale=600)
        tok = token(key(0), clock, ttl=3600)
        await auth.authenticate(f"Bearer {tok}")
        issuer.fail = True
        clock.advance(601)
        with pytest.raises(KeysUnavailable):
            await auth.authenticate(f"Bearer {tok}")

    asyncio.run(main())


def test_lru_is_bounded_and_evicts_least_recently_used() -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock, size=2)
        a, b, c = (token(key(0), clock, jti=j) for j in "abc")
        for t in (a, b, a, c):  # a is used again, so b is the least recently used
            await auth.authenticate(f"Bearer {t}")
        assert len(auth.cache) == 2
        assert auth.cache.get(a) is not None
        assert auth.cache.get(c) is not None
        assert auth.cache.get(b) is None
        assert auth.cache.evictions == 1

    asyncio.run(main())


def test_size_zero_disables_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock, size=0)
        tok = token(key(0), clock)
        await auth.authenticate(f"Bearer {tok}")
        await auth.authenticate(f"Bearer {tok}")
        assert len(auth.cache) == 0
        assert auth.cache.hits == 0
        assert not auth.cache.enabled

    asyncio.run(main())


def _respellings(tok: str) -> list[str]:
    """Other spellings of ``tok`` that a lenient base64url decoder reads as the same bytes."""
    head, body, sig = tok.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(sig) % 4 == 2  # a 2048-bit signature: the last character carries 4 unused bits
    flipped = alphabet[alphabet.index(sig[-1]) ^ 1]  # same bytes, other unused low bits
    padded = [f"{head}{'=' * (-len(head) % 4)}.{body}.{sig}", f"{head}.{body}.{sig}=="]
    return [*(p for p in padded if p != tok), f"{head}.{body}.{sig[:-1]}{flipped}"]


def test_exact_token_string_only() -> None:
    """A cached token spelled differently (padding, unused low bits of the last character) is a
    different key: it misses the cache and is verified from scratch, which refuses it."""

    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock)
        tok = token(key(0), clock)
        await auth.authenticate(f"Bearer {tok}")
        assert auth.cache.get(tok) is not None
        hits = auth.cache.hits
        variants = _respellings(tok)
        assert len(variants) == 3
        for variant in variants:
            assert variant != tok
            assert auth.cache.get(variant) is None
            with pytest.raises(InvalidToken, match="malformed"):
                await auth.authenticate(f"Bearer {variant}")
        assert auth.cache.hits == hits  # no spelling but the exact one was ever served
        assert len(auth.cache) == 1
        assert auth.cache.get(tok) is not None  # the honest spelling is still a hit

    asyncio.run(main())


def test_negative_size_is_refused() -> None:
    assert TokenCache(10, clock=FakeClock()).get("abc") is None
    with pytest.raises(ValueError):
        TokenCache(-1)
