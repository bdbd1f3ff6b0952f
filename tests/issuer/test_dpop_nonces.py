"""Server-provided DPoP nonces (issuer/container.py ``DPoPNonces``, RFC 9449 §8) on a fake clock:
a nonce passes in its slot and the next, not later; any other value, or none, is answered with
the current nonce; two issuers with the same secret agree, with another secret they do not.
Through a real issuer (and a second replica): tests/e2e/test_dpop_token.py."""

from __future__ import annotations

import re

from issuer.container import DPOP_NONCE_SLOT, DPoPNonces, dpop_nonce_key, sign_in_key

T0 = 1_800_000_000.0  # the start of a slot (a multiple of 60)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_a_nonce_is_good_for_its_slot_and_the_next() -> None:
    clock = Clock()
    nonces = DPoPNonces(dpop_nonce_key("secret"), clock=clock)
    nonce = nonces.current()
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", nonce)
    assert nonces(nonce) is None
    clock.now = T0 + DPOP_NONCE_SLOT - 0.001
    assert nonces(nonce) is None
    clock.now = T0 + DPOP_NONCE_SLOT  # the next slot: still accepted, a new one is current
    assert nonces(nonce) is None
    assert nonces.current() != nonce
    clock.now = T0 + 2 * DPOP_NONCE_SLOT  # two slots on: demanded afresh
    assert nonces(nonce) == nonces.current()


def test_no_nonce_or_another_value_is_answered_with_the_current_one() -> None:
    nonces = DPoPNonces(dpop_nonce_key("secret"), clock=Clock())
    current = nonces.current()
    for presented in (None, "", "x" * 24, current[:-1], current + "A", "é"):
        assert nonces(presented) == current


def test_replicas_with_one_secret_agree_and_other_secrets_do_not() -> None:
    clock = Clock()
    one = DPoPNonces(dpop_nonce_key("secret"), clock=clock)
    two = DPoPNonces(dpop_nonce_key("secret"), clock=clock)
    other = DPoPNonces(dpop_nonce_key("another secret"), clock=clock)
    assert two(one.current()) is None
    assert other(one.current()) == other.current() != one.current()
    assert dpop_nonce_key("secret") != sign_in_key("secret")  # keys under their own labels
