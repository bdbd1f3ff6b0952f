"""BearerAuthenticator: the order of the work per request (cheap refusals first)."""

from __future__ import annotations

import asyncio

import pytest

from shared.clock import FakeClock
from shared.errors import InvalidToken
from shared.jws import b64url_encode
from shared.token_cache import TokenCache
from shared.verification import BearerAuthenticator
from tests.support.jwks_fakes import FakeIssuer, key, make_client, token, verifier


def _authenticator(issuer: FakeIssuer, clock: FakeClock) -> BearerAuthenticator:
    jwks, _ = make_client(issuer, clock)
    return BearerAuthenticator(verifier(clock), jwks, cache=TokenCache(0))


def _with_payload(tok: str, payload_b64: str) -> str:
    header, _, signature = tok.split(".")
    return f"{header}.{payload_b64}.{signature}"


def test_unknown_kid_is_refused_before_the_payload_is_decoded() -> None:
    """A flood of random kids costs a header decode each, not a full parse."""

    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock)
        garbage = b64url_encode(b"not json")
        # Known kid: the payload is decoded (strictly) before the signature check.
        with pytest.raises(InvalidToken, match="payload is malformed"):
            await auth.authenticate("Bearer " + _with_payload(token(key(0), clock), garbage))
        # Unknown kid: refused on the kid; the payload was never looked at.
        with pytest.raises(InvalidToken, match="unknown key"):
            await auth.authenticate("Bearer " + _with_payload(token(key(1), clock), garbage))
        assert auth.results["invalid_token"] == 2

    asyncio.run(main())


def test_header_checks_come_before_the_key_lookup() -> None:
    async def main() -> None:
        clock = FakeClock()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        auth = _authenticator(issuer, clock)
        fetches = issuer.fetches
        header = b64url_encode(b'{"alg":"HS256","typ":"at+jwt","kid":"' + b"k" * 43 + b'"}')
        forged = header + token(key(1), clock)[token(key(1), clock).index(".") :]
        with pytest.raises(InvalidToken, match="algorithm"):
            await auth.authenticate("Bearer " + forged)
        assert issuer.fetches == fetches  # a bad header never reaches the JWKS client

    asyncio.run(main())
