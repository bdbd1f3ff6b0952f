"""DPoP at the resource server, framework-free: the token's ``cnf.jkt`` and the authenticator's
rules (RFC 9449 §6.1, §7), with keys of the tests' own and hand-built proofs."""

from __future__ import annotations

from typing import Any

import pytest

from shared.clock import FakeClock
from shared.dpop import thumbprint
from shared.errors import InvalidToken
from shared.tokens import AccessToken
from tests.shared.test_dpop_support import EC_KEY, public_jwk
from tests.support.jwks_fakes import key, token, verifier

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
    ids=repr,
)
def test_a_malformed_cnf_is_invalid_token(cnf: Any) -> None:
    with pytest.raises(InvalidToken, match="cnf"):
        _claims(FakeClock(), cnf=cnf)
