"""DPoP at the resource server, framework-free: the token's ``cnf.jkt`` and the authenticator's
rules (RFC 9449 §6.1, §7), with keys of the tests' own and hand-built proofs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.clock import FakeClock
from shared.dpop import DPoPVerifier, access_token_hash
from shared.dpop_errors import InvalidDPoPProof
from shared.dpop_keys import thumbprint
from shared.dpop_replay import ReplayCache, ReplayCacheFull
from shared.errors import (
    InsufficientScope,
    InvalidToken,
    KeyhouseError,
    MissingToken,
    ServerError,
)
from shared.token_cache import TokenCache
from shared.tokens import AccessToken
from shared.verification import BearerAuthenticator, ProofContext, dpop_challenges
from tests.shared.test_dpop_support import (
    EC_KEY,
    EC_KEY_2,
    NOW,
    RSA_KEY,
    URL,
    claims,
    make_proof,
    public_jwk,
)
from tests.support.fuzz import TEST_SETTINGS, mutated_text
from tests.support.jwks_fakes import FakeIssuer, key, make_client, token, verifier

JKT = thumbprint(public_jwk(EC_KEY))


def _claims(clock: FakeClock, **overrides: Any) -> AccessToken:
    tok = token(key(0), clock, **overrides)
    v = verifier(clock)
    jwt = v.parse(tok)
    return v.check_claims(jwt.payload, kid=key(0).kid)


def test_a_token_without_cnf_has_no_jkt() -> None:
    assert _claims(FakeClock()).cnf_jkt is None


def test_a_bound_token_exposes_its_cnf_jkt() -> None:
    assert _claims(FakeClock(), cnf={"jkt": JKT}).cnf_jkt == JKT


@pytest.mark.parametrize(
    "cnf",
    [
        None,
        "x",
        [JKT],
        {},
        {"jkt": None},
        {"jkt": 1},
        {"jkt": ""},
        {"jkt": JKT + "="},
        {"jkt": JKT[:-1]},
        {"jkt": JKT[:-1] + "+"},
        {"jkt": JKT, "x5t#S256": JKT},
        {"x5t#S256": JKT},
    ],
    # Stable ids (JKT comes from a key made at import: xdist workers must collect the same ids).
    ids=lambda cnf: (
        repr(cnf).replace(JKT, "<jkt>").replace(JKT[:-1], "<jkt without its last character>")
    ),
)
def test_a_malformed_cnf_is_invalid_token(cnf: Any) -> None:
    with pytest.raises(InvalidToken, match="cnf"):
        _claims(FakeClock(), cnf=cnf)


# --- BearerAuthenticator with a DPoP verifier ---------------------------------------------


class World:
    """An authenticator over a fake issuer publishing key(0), a DPoP verifier on the same
    clock, and a token bound to EC_KEY."""

    def __init__(self, *, require_dpop: bool = False, cache_size: int = 100) -> None:
        self.clock = FakeClock(NOW)
        issuer = FakeIssuer()
        issuer.publish(key(0))
        jwks, _ = make_client(issuer, self.clock)
        self.replay = ReplayCache(lifetime=65, max_entries=3, clock=self.clock)
        self.auth = BearerAuthenticator(
            verifier(self.clock),
            jwks,
            cache=TokenCache(cache_size, clock=self.clock),
            dpop=DPoPVerifier(clock=self.clock, replay_cache=self.replay),
            require_dpop=require_dpop,
        )
        self.bound = token(key(0), self.clock, cnf={"jkt": JKT})
        self.plain = token(key(0), self.clock)

    def proof(self, tok: str, key_: Any = EC_KEY, alg: str = "ES256", **overrides: Any) -> str:
        fields = {"iat": int(self.clock()), "ath": access_token_hash(tok), **overrides}
        payload = claims(**fields)
        return make_proof(key_, alg, payload=payload)

    def run(
        self, authorization: str | None, proofs: tuple[str, ...] = (), method: str = "GET"
    ) -> AccessToken:
        context = ProofContext(proofs, method, URL)
        return asyncio.run(self.auth.authenticate(authorization, request=lambda: context))


def test_a_bound_token_with_its_proof_is_accepted_and_counted_valid() -> None:
    w = World()
    access = w.run(f"DPoP {w.bound}", (w.proof(w.bound),))
    assert access.cnf_jkt == JKT
    # Again (from the token cache this time) with a fresh proof; the scheme is case-insensitive.
    assert w.run(f"dpop {w.bound}", (w.proof(w.bound),)).cnf_jkt == JKT
    assert w.auth.cache.hits == 1
    assert w.auth.results["valid"] == 2


def test_an_rsa_proof_key_binds_too() -> None:
    w = World()
    bound = token(key(0), w.clock, cnf={"jkt": thumbprint(public_jwk(RSA_KEY))})
    assert w.run(f"DPoP {bound}", (w.proof(bound, RSA_KEY, "RS256"),)).subject


def test_a_plain_bearer_token_never_asks_for_the_proof_context() -> None:
    w = World()

    def context() -> ProofContext:
        raise AssertionError("no DPoP work on the Bearer path")

    for _ in range(2):  # verified, then from the cache
        access = asyncio.run(w.auth.authenticate(f"Bearer {w.plain}", request=context))
        assert access.cnf_jkt is None
    assert w.auth.cache.hits == 1


def _refused(w: World, exc: type[Exception], match: str, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match):
        w.run(*args, **kwargs)


def test_a_bound_token_sent_as_bearer_is_invalid_token_verified_or_cached() -> None:
    w = World()
    _refused(w, InvalidToken, "DPoP-bound", f"Bearer {w.bound}")
    w.run(f"DPoP {w.bound}", (w.proof(w.bound),))  # now cached
    _refused(w, InvalidToken, "DPoP-bound", f"Bearer {w.bound}")
    assert w.auth.results["invalid_token"] == 2


def test_a_plain_token_sent_as_dpop_is_invalid_token() -> None:
    w = World()
    _refused(w, InvalidToken, "not DPoP-bound", f"DPoP {w.plain}", (w.proof(w.plain),))


@pytest.mark.parametrize("count", [0, 2])
def test_the_dpop_scheme_needs_exactly_one_proof(count: int) -> None:
    w = World()
    proofs = tuple(w.proof(w.bound) for _ in range(count))
    _refused(w, InvalidDPoPProof, "exactly one", f"DPoP {w.bound}", proofs)
    assert w.auth.results["invalid_dpop_proof"] == 1


def test_each_proof_check_refuses() -> None:
    w = World()
    b = w.bound
    cases = {
        "ath does not match": w.proof(b, ath=access_token_hash(w.plain)),
        "not the key the token is bound to": w.proof(b, EC_KEY_2),
        "htm does not match": w.proof(b, htm="POST"),
        "htu does not match": w.proof(b, htu=URL + "/other"),
        "iat is outside": w.proof(b, iat=int(w.clock()) - 3600),
    }
    for match, proof in cases.items():
        _refused(w, InvalidDPoPProof, match, f"DPoP {b}", (proof,))


def test_a_replayed_proof_is_refused() -> None:
    w = World()
    proof = w.proof(w.bound)
    w.run(f"DPoP {w.bound}", (proof,))
    _refused(w, InvalidDPoPProof, "used before", f"DPoP {w.bound}", (proof,))


def test_a_full_replay_cache_is_503_with_retry_after() -> None:
    w = World()
    for _ in range(3):
        w.run(f"DPoP {w.bound}", (w.proof(w.bound),))
    with pytest.raises(ReplayCacheFull) as caught:
        w.run(f"DPoP {w.bound}", (w.proof(w.bound),))
    assert caught.value.status_code == 503
    assert caught.value.headers["Retry-After"] == "65"
    w.clock.advance(66)
    w.bound = token(key(0), w.clock, cnf={"jkt": JKT})
    assert w.run(f"DPoP {w.bound}", (w.proof(w.bound),)).cnf_jkt == JKT


def test_require_dpop_refuses_every_bearer_token() -> None:
    w = World(require_dpop=True)
    assert not w.auth.accepts_bearer
    _refused(w, InvalidToken, "DPoP-bound tokens only", f"Bearer {w.plain}")
    _refused(w, InvalidToken, "DPoP-bound tokens only", f"Bearer {w.bound}")
    assert w.run(f"DPoP {w.bound}", (w.proof(w.bound),)).cnf_jkt == JKT


def test_without_a_dpop_verifier_the_dpop_scheme_is_no_token() -> None:
    w = World()
    w.auth.dpop = None
    _refused(w, MissingToken, "Bearer scheme", f"DPoP {w.bound}", (w.proof(w.bound),))


@pytest.mark.parametrize("bad", ["DPoP ", "DPoP a b", 'DPoP a"b'])
def test_a_malformed_dpop_token_is_invalid_token(bad: str) -> None:
    _refused(World(), InvalidToken, "malformed", bad, ("x",))


# --- Challenges ------------------------------------------------------------------------------

ALGS = ("ES256", "RS256")


def _challenges(exc: Any, scheme: str | None, accepts_bearer: bool = True) -> list[str] | None:
    return dpop_challenges(
        exc, realm="photos", scheme=scheme, accepts_bearer=accepts_bearer, dpop_algorithms=ALGS
    )


def test_challenges() -> None:
    missing = MissingToken("no access token was sent")
    assert _challenges(missing, None) == [
        'Bearer realm="photos"',
        'DPoP realm="photos", algs="ES256 RS256"',
    ]
    assert _challenges(missing, None, False) == ['DPoP realm="photos", algs="ES256 RS256"']
    proof = InvalidDPoPProof("DPoP proof has been used before")
    expected = (
        'DPoP realm="photos", error="invalid_dpop_proof", '
        'error_description="DPoP proof has been used before", algs="ES256 RS256"'
    )
    assert _challenges(proof, "dpop") == [expected]
    assert _challenges(proof, "bearer") == [expected]
    bad = InvalidToken("token has expired")
    assert _challenges(bad, "bearer") is None  # the Bearer challenge, as before
    assert _challenges(bad, "dpop") == [
        'DPoP realm="photos", error="invalid_token", error_description="token has expired", '
        'algs="ES256 RS256"'
    ]
    assert _challenges(bad, "bearer", False) == _challenges(bad, "dpop")
    scope = InsufficientScope("requires scope photos:write", scope="photos:write")
    assert _challenges(scope, "dpop") == [
        'DPoP realm="photos", error="insufficient_scope", '
        'error_description="requires scope photos:write", algs="ES256 RS256", '
        'scope="photos:write"'
    ]
    assert _challenges(ReplayCacheFull("full", retry_after=3), "dpop") == []
    assert _challenges(ServerError("x"), "dpop") == []


# --- Arbitrary input -------------------------------------------------------------------------

_PROPERTY_WORLD = World(cache_size=0)
_PROPERTY_WORLD.replay.max_entries = 10**6
_GOOD_PROOF = _PROPERTY_WORLD.proof(_PROPERTY_WORLD.bound)


_SCHEMES = st.sampled_from(["DPoP ", "dpop ", "Bearer ", "DPoP  ", ""])


@TEST_SETTINGS
@given(
    authorization=st.one_of(
        st.none(),
        st.tuples(_SCHEMES, st.text(max_size=80)).map("".join),
        st.tuples(_SCHEMES, st.just(_PROPERTY_WORLD.bound)).map("".join),
        st.tuples(_SCHEMES, mutated_text(_PROPERTY_WORLD.bound)).map("".join),
    ),
    proofs=st.lists(
        st.one_of(st.text(max_size=200), st.just(_GOOD_PROOF), mutated_text(_GOOD_PROOF)),
        max_size=3,
    ),
    method=st.sampled_from(["GET", "POST", "get", ""]),
)
def test_arbitrary_credentials_raise_only_keyhouse_errors(
    authorization: str | None, proofs: list[str], method: str
) -> None:
    """Whatever arrives in Authorization and DPoP: a token, or a KeyhouseError (never another
    exception, so never a 500). The good proof is accepted once, then refused as a replay."""
    with contextlib.suppress(KeyhouseError):
        _PROPERTY_WORLD.run(authorization, tuple(proofs), method)
