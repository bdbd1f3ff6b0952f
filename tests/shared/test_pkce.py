"""shared.pkce: RFC 7636 S256, its syntax rules and the constant-time comparison's answers."""

from __future__ import annotations

import pytest

from shared.pkce import is_valid_challenge, is_valid_verifier, s256_challenge, verifier_matches

# RFC 7636 Appendix B: the worked example.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_matches_the_rfc_example() -> None:
    assert s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert verifier_matches(RFC_VERIFIER, RFC_CHALLENGE)
    assert is_valid_challenge(RFC_CHALLENGE)


def test_a_wrong_verifier_does_not_match() -> None:
    other = RFC_VERIFIER[:-1] + ("A" if RFC_VERIFIER[-1] != "A" else "B")
    assert not verifier_matches(other, RFC_CHALLENGE)


def test_plain_is_not_accepted() -> None:
    # A "plain" client sends the verifier as its challenge: S256 of it is something else.
    assert not verifier_matches(RFC_VERIFIER, RFC_VERIFIER)


@pytest.mark.parametrize(
    "verifier",
    [
        "",
        "a" * 42,  # too short (43..128)
        "a" * 129,  # too long
        "a" * 42 + "+",  # not unreserved
        "a" * 42 + "=",
        "a" * 42 + " ",
        "a" * 42 + "é",
        "a" * 42 + "\n",
    ],
)
def test_malformed_verifiers_are_refused_and_never_match(verifier: str) -> None:
    assert not is_valid_verifier(verifier)
    # Even against the challenge it would hash to, a malformed verifier is no proof.
    challenge = s256_challenge(verifier) if verifier.isascii() else RFC_CHALLENGE
    assert not verifier_matches(verifier, challenge)


@pytest.mark.parametrize("verifier", ["a" * 43, "a" * 128, "A-._~z09" * 6])
def test_well_formed_verifiers(verifier: str) -> None:
    assert is_valid_verifier(verifier)
    assert verifier_matches(verifier, s256_challenge(verifier))


@pytest.mark.parametrize(
    "challenge",
    [
        "",
        RFC_CHALLENGE[:-1],  # 42 characters
        RFC_CHALLENGE + "A",  # 44
        RFC_CHALLENGE[:-1] + "N",  # non-zero padding bits: not a base64url SHA-256
        RFC_CHALLENGE[:-1] + "=",
        RFC_CHALLENGE.replace("-", "+"),
    ],
)
def test_malformed_challenges(challenge: str) -> None:
    assert not is_valid_challenge(challenge)


def test_a_challenge_that_is_not_ascii_never_matches() -> None:
    assert not verifier_matches(RFC_VERIFIER, "é" * 43)
