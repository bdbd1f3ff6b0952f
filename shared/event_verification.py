"""Verification of a pushed Security Event Token (RFC 8417) from the issuer's event stream.

A SET is checked like an access token, with the same pieces (``shared/jws.py``'s strict
parse, the algorithm pinned by the :class:`~shared.tokens.TokenVerifier` from configuration,
the key from the service's :class:`~shared.jwks_client.JWKSClient`), in this order, cheapest
first:

1. a compact JWS within the token size cap, strictly decoded header (no ``crit``, no key
   injection: :func:`shared.jws.parse_header`);
2. ``alg`` the configured one (RS256), never the token's choice; ``typ`` exactly
   ``secevent+jwt`` (RFC 8417 §2.3), so an access token (``at+jwt``) or an ID token (``JWT``)
   sent as an event is refused;
3. a ``kid`` the JWKS client knows (an unknown one may cause its normal, rate-limited fetch;
   no usable key set raises :class:`~shared.errors.KeysUnavailable`, which the stream treats
   as "try again later", not as a bad event);
4. the RS256 signature (:func:`shared.id_tokens.verified_payload`);
5. the payload's structure (:func:`shared.security_events.rule_from_claims`: one known event,
   ``aud`` = ``iss`` + ``/events``, well-formed members);
6. ``iss`` the configured issuer (so ``aud`` is this issuer's stream), and ``iat`` not in the
   future beyond the verifier's leeway.

Anything else raises a :class:`~shared.errors.KeyhouseError` whose description names the rule
(never the token).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidToken
from shared.id_tokens import verified_payload
from shared.jwks_client import JWKSClient
from shared.jws import parse_header
from shared.security_events import SET_TYPE, DenyRule, rule_from_claims
from shared.tokens import TokenVerifier

WHAT = "security event"


@dataclass(frozen=True)
class VerifiedEvent:
    """A SET that passed every check: its rule, its own ``jti`` and ``iat``, and the ``kid``
    of the key that signed it."""

    rule: DenyRule
    jti: str
    issued_at: int
    kid: str


class EventVerifier:
    """Verifies SETs of the issuer ``verifier`` trusts, with the keys ``jwks`` holds."""

    def __init__(self, verifier: TokenVerifier, jwks: JWKSClient) -> None:
        self.verifier = verifier
        self.jwks = jwks

    async def verify(self, token: str) -> VerifiedEvent:
        verifier = self.verifier
        split = parse_header(token, max_bytes=verifier.max_token_bytes)
        header = split.header
        if header.get("alg") != verifier.algorithm:
            raise InvalidToken(f"{WHAT} algorithm is not accepted")
        if header.get("typ") != SET_TYPE:
            raise InvalidToken(f"{WHAT} type is not {SET_TYPE}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken(f"{WHAT} has no kid")
        key = await self.jwks.get_key(kid)
        claims = verified_payload(split, key, what=WHAT)
        rule = rule_from_claims(claims)
        if claims["iss"] != verifier.issuer:
            raise InvalidToken(f"{WHAT} issuer is not accepted")
        issued_at: int = claims["iat"]
        if issued_at > verifier.clock() + verifier.leeway:
            raise InvalidToken(f"{WHAT} was issued in the future")
        return VerifiedEvent(rule=rule, jti=claims["jti"], issued_at=issued_at, kid=kid)
