"""Property-based tests of the token verifier (issue 13, point 5): whatever arrives in an
``Authorization`` header (arbitrary text or bytes, a valid token with characters flipped, inserted
or deleted, header and payload re-encoded with arbitrary JSON and signed by a trusted key), the
outcome is verified claims that /whoami can write back, or a Keyhouse error answered with 400/401;
never another exception. bench/fuzz.py runs the same targets for a million examples."""

from __future__ import annotations

from hypothesis import given

from tests.support.fuzz import (
    TEST_SETTINGS,
    VERIFIER_ARBITRARY,
    VERIFIER_MUTATED,
    VERIFIER_SIGNED_JSON,
    check_token,
    valid_token,
)


@TEST_SETTINGS
@given(VERIFIER_ARBITRARY.strategy)
def test_arbitrary_authorization_headers(authorization: str) -> None:
    VERIFIER_ARBITRARY.check(authorization)


@TEST_SETTINGS
@given(VERIFIER_MUTATED.strategy)
def test_mutations_of_a_valid_token(value: str) -> None:
    VERIFIER_MUTATED.check(value)


@TEST_SETTINGS
@given(VERIFIER_SIGNED_JSON.strategy)
def test_signed_tokens_with_arbitrary_json(token: str) -> None:
    VERIFIER_SIGNED_JSON.check(token)


def test_the_targets_accept_a_valid_token() -> None:
    """Control: the checks pass valid input through to the end (nothing refuses everything)."""
    from tests.support.fuzz import _verifier

    check_token(valid_token())
    assert _verifier().auth.results["valid"] >= 1
