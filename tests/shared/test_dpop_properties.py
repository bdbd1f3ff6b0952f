"""Property tests of shared.dpop: whatever arrives as a DPoP proof (arbitrary text, a valid proof
with characters flipped, inserted or deleted, a proof whose header, key and claims are arbitrary
JSON text correctly signed by the key it names), the verifier answers a proof or raises
InvalidDPoPProof; never another exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.clock import FakeClock
from shared.dpop import DPoPProof, DPoPSettings, DPoPVerifier
from shared.dpop_errors import InvalidDPoPProof
from shared.dpop_keys import thumbprint
from shared.dpop_replay import ReplayCache
from shared.jws import b64url_decode, b64url_encode
from tests.shared.test_dpop_support import (
    EC_KEY,
    NOW,
    RSA_KEY,
    URL,
    claims,
    make_proof,
    public_jwk,
    sign,
)
from tests.support.fuzz import (
    TEST_SETTINGS,
    members_with_changes,
    mutated_text,
    to_bytes,
)

CLOCK = FakeClock(NOW)
VERIFIER = DPoPVerifier(
    DPoPSettings(algorithms=("ES256", "RS256", "PS256")),
    clock=CLOCK,
    replay_cache=ReplayCache(lifetime=65, max_entries=10**6, clock=CLOCK),
)
TOKEN = "an-access-token"
VALID = make_proof(payload=claims(ath="i-am-wrong"))


def check(proof: Any, **kw: Any) -> DPoPProof | None:
    try:
        return VERIFIER.verify(proof, method="GET", url=URL, **kw)
    except InvalidDPoPProof as exc:
        refusal = exc
    assert refusal.status_code == 401
    assert refusal.description  # every refusal says why
    return None


@TEST_SETTINGS
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.hex())))
def test_arbitrary_text(proof: str) -> None:
    assert check(proof) is None


@TEST_SETTINGS
@given(mutated_text(VALID))
def test_mutations_of_a_valid_proof(proof: str) -> None:
    # The unmutated proof passes only the first time (later: a replay); anything else is refused.
    result = check(proof)
    assert result is None or proof == VALID


@st.composite
def signed_arbitrary_proofs(draw: st.DrawFn) -> str:
    key, alg = draw(st.sampled_from([(EC_KEY, "ES256"), (RSA_KEY, "RS256"), (RSA_KEY, "PS256")]))
    jwk_text = draw(members_with_changes(public_jwk(key)))
    header_members = [("typ", "dpop+jwt"), ("alg", alg)]
    header_text = draw(members_with_changes(dict(header_members)))
    header_text = header_text[:-1] + ("," if header_text != "{}" else "") + f'"jwk":{jwk_text}}}'
    payload_text = draw(members_with_changes(claims(iat=int(NOW))))
    signing_input = (
        f"{b64url_encode(to_bytes(header_text))}.{b64url_encode(to_bytes(payload_text))}"
    )
    return f"{signing_input}.{b64url_encode(sign(key, alg, signing_input.encode()))}"


@TEST_SETTINGS
@given(signed_arbitrary_proofs(), st.booleans())
def test_signed_proofs_with_arbitrary_json(proof: str, with_token: bool) -> None:
    kw = {"access_token": TOKEN, "expected_jkt": "x"} if with_token else {}
    result = check(proof, **kw)
    if result is not None:  # passed: then it really is a proof for this request, by its key
        assert not with_token
        header = json.loads(b64url_decode(proof.split(".")[0]))
        assert result.jkt == thumbprint(header["jwk"])
        assert header["typ"] == "dpop+jwt"
        assert result.alg == header["alg"]
        assert result.htm == "GET"
        assert result.htu == URL
        assert NOW - 60 <= result.iat <= NOW + 5


def test_the_targets_accept_a_valid_proof() -> None:
    """Control: the checks pass a valid proof through (nothing refuses everything)."""
    assert check(make_proof()) is not None
    assert check(make_proof(RSA_KEY, "PS256")) is not None
