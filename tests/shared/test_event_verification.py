"""shared.event_verification: a pushed SET passes only as the issuer signs it, one negative test
per rule (typ, alg, kid, signature, structure, iss, iat), and no usable keys is "later", not a
verdict."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared import security_events as se
from shared.clock import FakeClock
from shared.errors import InvalidToken, KeyhouseError, KeysUnavailable
from shared.event_verification import EventVerifier, VerifiedEvent
from shared.jws import b64url_encode
from shared.keys import SigningKey
from shared.security_events import DenyRule, InvalidSecurityEvent, sign_set
from tests.support.jwks_fakes import ISSUER, FakeIssuer, key, make_client, token, verifier

NOW = 1_700_000_000


class World:
    """A verifier over a fake issuer publishing key(0), on a fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock(NOW)
        self.issuer = FakeIssuer()
        self.issuer.publish(key(0))
        self.jwks, _ = make_client(self.issuer, self.clock)
        self.events = EventVerifier(verifier(self.clock), self.jwks)

    def verify(self, data: str) -> VerifiedEvent:
        return asyncio.run(self.events.verify(data))


def revoked_jti(issuer: str = ISSUER, now: int = NOW, **kwargs: Any) -> dict[str, Any]:
    return se.token_revoked(
        issuer=issuer, now=now, token_jti="token-jti-0123456789", exp=now + 900, **kwargs
    )


def signed(claims: dict[str, Any], signer: SigningKey | None = None) -> str:
    return sign_set(claims, signer or key(0))


def with_header(header: dict[str, Any], claims: dict[str, Any], signer: SigningKey) -> str:
    """A JWS with this exact header, signed RS256 by ``signer`` (for the header's rules)."""
    parts = (b64url_encode(json.dumps(part).encode()) for part in (header, claims))
    signing_input = ".".join(parts).encode()
    signature = signer.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64url_encode(signature)


def test_an_event_the_issuer_signed_passes_with_its_rule() -> None:
    w = World()
    claims = revoked_jti()
    event = w.verify(signed(claims))
    assert event.rule == DenyRule("jti", "token-jti-0123456789", None, NOW + 900)
    assert event.jti == claims["jti"]
    assert event.issued_at == NOW
    assert event.kid == key(0).kid


def test_a_timed_event_keeps_its_cutoff() -> None:
    w = World()
    claims = se.user_disabled(issuer=ISSUER, now=NOW - 5, sub="user:alice", exp=NOW + 895)
    rule = w.verify(signed(claims)).rule
    assert rule == DenyRule("sub", se.subject_hash("user:alice"), NOW - 5, NOW + 895)


def test_a_forged_signature_under_a_known_kid_is_refused() -> None:
    w = World()
    forger = SigningKey(kid=key(0).kid, private_key=key(1).private_key)
    with pytest.raises(InvalidToken, match="security event signature is invalid"):
        w.verify(signed(revoked_jti(), forger))


def test_an_unknown_key_is_refused() -> None:
    w = World()
    with pytest.raises(InvalidToken, match="unknown key"):
        w.verify(signed(revoked_jti(), key(1)))


def test_another_issuer_is_refused() -> None:
    w = World()
    claims = revoked_jti(issuer="https://evil.example")  # consistent aud: its own stream
    with pytest.raises(InvalidToken, match="security event issuer is not accepted"):
        w.verify(signed(claims))


def test_an_audience_that_is_not_the_stream_is_refused() -> None:
    w = World()
    claims = {**revoked_jti(), "aud": "photos"}
    with pytest.raises(InvalidSecurityEvent, match="aud"):
        w.verify(signed(claims))


def test_an_access_token_sent_as_an_event_is_refused() -> None:
    w = World()
    with pytest.raises(InvalidToken, match="security event type is not secevent"):
        w.verify(token(key(0), w.clock))


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "application/secevent+jwt", "SECEVENT+JWT"])
def test_the_type_must_be_exactly_secevent_jwt(typ: str | None) -> None:
    w = World()
    header: dict[str, Any] = {"alg": "RS256", "kid": key(0).kid}
    if typ is not None:
        header["typ"] = typ
    with pytest.raises(InvalidToken, match="type is not secevent"):
        w.verify(with_header(header, revoked_jti(), key(0)))


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "PS256", "ES256"])
def test_the_algorithm_is_pinned(alg: str) -> None:
    w = World()
    header = {"alg": alg, "typ": "secevent+jwt", "kid": key(0).kid}
    with pytest.raises(InvalidToken, match="algorithm is not accepted"):
        w.verify(with_header(header, revoked_jti(), key(0)))


def test_a_kid_is_required() -> None:
    w = World()
    header = {"alg": "RS256", "typ": "secevent+jwt"}
    with pytest.raises(InvalidToken, match="has no kid"):
        w.verify(with_header(header, revoked_jti(), key(0)))


def test_a_header_naming_its_own_key_is_refused() -> None:
    w = World()
    header = {"alg": "RS256", "typ": "secevent+jwt", "kid": key(0).kid, "jwk": {}}
    with pytest.raises(InvalidToken, match="names its own key"):
        w.verify(with_header(header, revoked_jti(), key(0)))


def test_an_event_from_the_future_is_refused_past_the_leeway() -> None:
    w = World()
    assert w.verify(signed(revoked_jti(now=NOW + 30))).issued_at == NOW + 30
    with pytest.raises(InvalidToken, match="issued in the future"):
        w.verify(signed(revoked_jti(now=NOW + 31)))


@pytest.mark.parametrize(
    "change",
    [
        {"events": {}},
        {"events": {se.TOKEN_REVOKED: {}, se.KEY_REVOKED: {}}},
        {"jti": "short"},
        {"iat": "now"},
    ],
    ids=["no event", "two events", "short jti", "string iat"],
)
def test_a_malformed_payload_is_refused(change: dict[str, Any]) -> None:
    w = World()
    with pytest.raises(InvalidSecurityEvent):
        w.verify(signed({**revoked_jti(), **change}))


@pytest.mark.parametrize("data", ["", "garbage", "a.b.c", "x" * 9000])
def test_garbage_is_refused(data: str) -> None:
    w = World()
    with pytest.raises(KeyhouseError) as raised:
        w.verify(data)
    assert raised.value.status_code < 500


def test_no_usable_keys_is_keys_unavailable_not_a_verdict() -> None:
    w = World()
    w.issuer.fail = True
    with pytest.raises(KeysUnavailable):
        w.verify(signed(revoked_jti()))
