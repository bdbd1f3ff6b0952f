"""BearerAuthenticator and the deny-list: every token is looked up, cache hits included; a
covered one is 401 invalid_token "the token has been revoked"; an empty list is never asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.clock import FakeClock
from shared.deny_list import DenyList
from shared.dpop import DPoPVerifier, access_token_hash
from shared.dpop_keys import thumbprint
from shared.dpop_replay import ReplayCache
from shared.errors import InvalidToken
from shared.security_events import subject_hash
from shared.token_cache import TokenCache
from shared.tokens import AccessToken
from shared.verification import BearerAuthenticator, ProofContext
from tests.shared.test_dpop_support import EC_KEY, NOW, URL, claims, make_proof, public_jwk
from tests.support.jwks_fakes import FakeIssuer, key, make_client, token, verifier

REVOKED = "the token has been revoked"


class World:
    def __init__(self, deny: DenyList | None = None) -> None:
        self.clock = FakeClock(NOW)
        self.issuer = issuer = FakeIssuer()
        issuer.publish(key(0))
        jwks, _ = make_client(issuer, self.clock)
        self.deny = deny if deny is not None else DenyList(clock=self.clock)
        self.replay = ReplayCache(lifetime=65, clock=self.clock)
        self.auth = BearerAuthenticator(
            verifier(self.clock),
            jwks,
            cache=TokenCache(100, clock=self.clock),
            dpop=DPoPVerifier(clock=self.clock, replay_cache=self.replay),
            deny=self.deny,
        )

    def token(self, **claims: Any) -> str:
        return token(key(0), self.clock, **claims)

    def bearer(self, tok: str) -> AccessToken:
        return asyncio.run(self.auth.authenticate(f"Bearer {tok}"))

    def refused(self, tok: str) -> None:
        with pytest.raises(InvalidToken, match=REVOKED):
            self.bearer(tok)


def test_a_revoked_jti_is_refused_even_from_the_cache() -> None:
    w = World()
    tok, other = w.token(jti="revoked-jti-0123456789"), w.token()
    w.bearer(tok)  # verified and cached
    w.bearer(other)
    w.deny.add("jti", "revoked-jti-0123456789", before=None, expires=NOW + 900)
    w.refused(tok)
    assert w.auth.cache.hits == 1  # the refusal came from the cache hit's lookup
    assert w.bearer(other).jwt_id != "revoked-jti-0123456789"  # unaffected
    assert w.auth.results["invalid_token"] == 1
    assert w.deny.refusals["jti"] == 1


def test_a_revoked_kid_refuses_every_token_of_that_key() -> None:
    w = World()
    tok = w.token()
    w.bearer(tok)
    w.deny.add("kid", key(0).kid, before=None, expires=NOW + 900)
    w.refused(tok)
    w.refused(w.token())  # an uncached one too


@pytest.mark.parametrize("claim", ["sid", "fid"])
def test_a_revoked_session_or_family_refuses_its_older_tokens(claim: str) -> None:
    w = World()
    old = w.token(**{claim: "S-1"})
    w.deny.add(claim, "S-1", before=NOW, expires=NOW + 900)
    w.refused(old)
    w.clock.advance(1)
    assert w.bearer(w.token(**{claim: "S-1"}))  # issued after the event
    assert w.bearer(w.token(**{claim: "S-2"}))


def test_a_disabled_user_is_matched_by_the_hash_of_sub() -> None:
    w = World()
    mine, theirs = w.token(sub="user:alice"), w.token(sub="user:bob")
    w.deny.add("sub", subject_hash("user:alice"), before=NOW, expires=NOW + 900)
    w.refused(mine)
    assert w.bearer(theirs).subject == "user:bob"


def test_a_revoked_dpop_bound_token_is_refused_before_its_proof_is_spent() -> None:
    w = World()
    bound = w.token(cnf={"jkt": thumbprint(public_jwk(EC_KEY))}, jti="bound-jti-0123456789ab")
    payload = claims(iat=int(w.clock()), ath=access_token_hash(bound))
    proof = make_proof(EC_KEY, "ES256", payload=payload)
    w.deny.add("jti", "bound-jti-0123456789ab", before=None, expires=NOW + 900)
    context = ProofContext((proof,), "GET", URL)
    with pytest.raises(InvalidToken, match=REVOKED):
        asyncio.run(w.auth.authenticate(f"DPoP {bound}", request=lambda: context))
    assert len(w.replay) == 0


def test_the_refusal_ends_when_the_entry_expires() -> None:
    w = World()
    tok = w.token(ttl=100, jti="short-lived-0123456789")
    w.deny.add("jti", "short-lived-0123456789", before=None, expires=NOW + 100)
    w.refused(tok)
    w.clock.advance(130)  # exp + leeway: the verifier's own refusal takes over
    with pytest.raises(InvalidToken, match="expired"):
        w.bearer(tok)


class NeverAsked(DenyList):
    def check(self, access: AccessToken) -> str | None:
        raise AssertionError("an empty deny-list must not be consulted")


def test_an_empty_deny_list_is_never_consulted() -> None:
    """The hot path (a cache hit at /whoami) pays one attribute test for the deny-list, nothing
    more, while no event is held: the bench's whoami must not get slower."""
    w = World(NeverAsked())
    tok = w.token()
    for _ in range(3):
        assert w.bearer(tok)
    assert w.auth.cache.hits == 2


def test_a_revoked_key_is_refused_as_revoked_even_once_it_left_the_key_set() -> None:
    w = World()
    tok = w.token()
    w.issuer.publish(key(1))  # key 0 is gone from the set: its tokens would be "unknown key"
    w.deny.add("kid", key(0).kid, before=None, expires=NOW + 900)
    w.refused(tok)  # refused on the header's kid, before the key lookup
    assert w.deny.refusals["kid"] == 1
