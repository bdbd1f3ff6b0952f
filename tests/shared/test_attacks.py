"""Attacks on the verifier, end to end through BearerAuthenticator (JWKS via MockTransport).

Every token here is refused with 401 ``invalid_token`` (or 400 for transport abuse); the control
test at the top shows the same machinery accepts an honest token, so a refusal is meaningful.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from shared import jws
from shared.clock import FakeClock
from shared.errors import InvalidRequest, InvalidToken, KeyhouseError, MissingToken
from shared.jws import b64url_encode
from shared.keys import SigningKey
from shared.token_cache import TokenCache
from shared.verification import BearerAuthenticator
from tests.support.jwks_fakes import AUDIENCE, ISSUER, FakeIssuer, key, make_client, verifier

CLOCK = FakeClock()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(CLOCK())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client:abc",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "j1",
        "client_id": "abc",
        "scope": "photos:read",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


def _header(signing: SigningKey = key(0), **overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": signing.kid}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not _DROP}


def _encode(part: Any) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return b64url_encode(raw)


def sign_rs256(header: Any, payload: Any, signing: SigningKey = key(0)) -> str:
    """A token signed with a real RSA key over exactly the bytes given (raw bytes allowed)."""
    signing_input = f"{_encode(header)}.{_encode(payload)}"
    signature = signing.private_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{b64url_encode(signature)}"


async def _verify(token: str, *, with_cache: bool = True) -> Any:
    issuer = FakeIssuer()
    issuer.publish(key(0))
    jwks, _ = make_client(issuer, CLOCK)
    auth = BearerAuthenticator(
        verifier(CLOCK), jwks, cache=TokenCache(100 if with_cache else 0, clock=CLOCK)
    )
    try:
        return await auth.authenticate(f"Bearer {token}")
    except KeyhouseError:
        assert len(auth.cache) == 0  # a refused token never lands in the cache
        raise


def refused(token: str, error: type[KeyhouseError] = InvalidToken) -> KeyhouseError:
    with pytest.raises(error) as info:
        asyncio.run(_verify(token))
    assert info.value.status_code in (400, 401)
    return info.value


def test_control_an_honest_token_is_accepted() -> None:
    access = asyncio.run(_verify(sign_rs256(_header(), _claims())))
    assert access.subject == "client:abc"


# -- algorithm attacks ----------------------------------------------------------------------------


def test_alg_confusion_hs256_keyed_with_the_public_key_pem() -> None:
    pem = key(0).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, pem.strip(), json.dumps(key(0).public_jwk()).encode()):
        signing_input = f"{_encode(_header(alg='HS256'))}.{_encode(_claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        error = refused(f"{signing_input}.{b64url_encode(mac)}")
        assert "algorithm" in error.description


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", "RS512", "PS256", "ES256", None])
def test_alg_none_and_other_algorithms(alg: Any) -> None:
    header = _header(alg=alg if alg is not None else _DROP)
    unsigned = f"{_encode(header)}.{_encode(_claims())}."
    refused(unsigned)
    refused(sign_rs256(header, _claims()))  # even with a valid RS256 signature


# -- header key injection -------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
def test_header_key_injection_with_the_attackers_key(member: str) -> None:
    attacker = key(5)  # not published by the issuer
    values = {
        "jwk": attacker.public_jwk(),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    for kid in (attacker.kid, key(0).kid):
        header = _header(attacker, kid=kid, **{member: values[member]})
        error = refused(sign_rs256(header, _claims(), attacker))
        assert "own key" in error.description


def test_token_signed_by_an_unpublished_key_is_refused() -> None:
    refused(sign_rs256(_header(key(5)), _claims(), key(5)))
    # Claiming a published kid does not help: the signature is checked with the published key.
    refused(sign_rs256(_header(key(0)), _claims(), key(5)))


# -- kid tricks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "k" * 129,
        "k" * 100_000,
        7,
        7.5,
        True,
        None,
        [key(0).kid],
        {"kid": key(0).kid},
        "",
    ],
)
def test_kid_tricks(kid: Any) -> None:
    header = _header(kid=kid if kid is not None else _DROP)
    refused(sign_rs256(header, _claims()))


# -- claim type tricks ----------------------------------------------------------------------------


FUTURE = int(CLOCK()) + 600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", str(FUTURE)),
        ("exp", True),
        ("exp", None),
        ("exp", [FUTURE]),
        ("exp", {"$date": FUTURE}),
        ("iat", "0"),
        ("nbf", False),
        ("aud", {"photos": True}),
        ("aud", 5),
        ("aud", []),
        ("aud", ["other", 5]),
        ("aud", [["photos"]]),
        ("aud", "Photos"),
        ("aud", "photos "),
        ("iss", {"url": ISSUER}),
        ("iss", ISSUER + "/"),
        ("sub", 42),
        ("sub", ""),
        ("client_id", ["abc"]),
        ("jti", None),
        ("scope", ["photos:read"]),
        ("scope", {"photos:read": True}),
        ("exp", _DROP),
        ("aud", _DROP),
        ("iss", _DROP),
    ],
)
def test_claim_type_tricks(name: str, value: Any) -> None:
    refused(sign_rs256(_header(), _claims(**{name: value})))


@pytest.mark.parametrize("literal", ["1e309", "-1e309", "NaN", "Infinity"])
def test_exp_non_finite_numbers(literal: str) -> None:
    payload = json.dumps(_claims(exp=0)).replace('"exp": 0', f'"exp": {literal}').encode()
    refused(sign_rs256(_header(), payload))


def test_typ_must_be_at_jwt() -> None:
    for typ in ("JWT", "jwt", "", None, ["at+jwt"]):
        refused(sign_rs256(_header(typ=typ if typ is not None else _DROP), _claims()))


def test_expired_and_not_yet_valid() -> None:
    now = int(CLOCK())
    refused(sign_rs256(_header(), _claims(exp=now - 31)))
    refused(sign_rs256(_header(), _claims(nbf=now + 3600)))
    refused(sign_rs256(_header(), _claims(iat=now + 3600)))


# -- encoding tricks ------------------------------------------------------------------------------


def test_duplicate_json_members_even_when_properly_signed() -> None:
    body = json.dumps(_claims())[:-1] + ', "aud": "other"}'
    refused(sign_rs256(_header(), body.encode()))
    header = json.dumps(_header())[:-1] + ', "alg": "none"}'
    refused(sign_rs256(header.encode(), _claims()))


def test_non_canonical_base64_of_a_valid_token() -> None:
    good = sign_rs256(_header(), _claims())
    head, body, sig = good.split(".")
    refused(f"{head}=.{body}.{sig}")
    refused(f"{head}.{body}.{sig}==")
    refused(f"{head}.{body.replace('-', '+').replace('_', '/')}.{sig}" + "+")
    # Flip the unused low bits of the last signature character: same bytes, other spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    variant = alphabet[last ^ 1]
    refused(f"{head}.{body}.{sig[:-1]}{variant}")


def test_tampered_payload() -> None:
    head, _, sig = sign_rs256(_header(), _claims()).split(".")
    refused(f"{head}.{_encode(_claims(scope='photos:read photos:write'))}.{sig}")


def test_oversized_token_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused on its length alone: no segment decoded, no JWKS fetched, no signature checked."""
    token = sign_rs256(_header(), _claims(pad="x" * 10_000))
    work: list[str] = []

    def counted(name: str) -> Any:
        real = getattr(jws, name)

        def call(*args: Any) -> Any:
            work.append(name)
            return real(*args)

        return call

    for name in ("b64url_decode", "strict_json_object"):
        monkeypatch.setattr(jws, name, counted(name))
    issuer = FakeIssuer()
    issuer.publish(key(0))
    jwks, _ = make_client(issuer, CLOCK)
    # No cache: its hit path starts the planned background refresh whatever the token.
    auth = BearerAuthenticator(verifier(CLOCK), jwks, cache=TokenCache(0))
    with pytest.raises(InvalidToken, match="too large"):
        asyncio.run(auth.authenticate(f"Bearer {token}"))
    assert issuer.fetches == 0
    assert work == []
    assert auth.results == {"invalid_token": 1}
    # The same machinery does the work for a token of honest size (so the counts above can move).
    asyncio.run(auth.authenticate(f"Bearer {sign_rs256(_header(), _claims())}"))
    assert issuer.fetches == 1
    assert "b64url_decode" in work


@pytest.mark.parametrize("count", [2, 4, 5])
def test_wrong_segment_counts(count: int) -> None:
    parts = sign_rs256(_header(), _claims()).split(".")
    refused(".".join((parts * 2)[:count]))


def test_unicode_in_the_token_is_refused_unicode_in_claims_is_fine() -> None:
    refused(sign_rs256(_header(), _claims()) + "\u00e9", InvalidToken)
    refused("\u0435yJ" + sign_rs256(_header(), _claims())[3:])  # Cyrillic homoglyph of e
    access = asyncio.run(_verify(sign_rs256(_header(), _claims(sub="ünïcode"))))
    assert access.subject == "ünïcode"


def test_lone_surrogate_in_payload_is_refused() -> None:
    refused(sign_rs256(_header(), b'{"sub": "\xed\xa0\x80"}'))


# -- bearer transport (RFC 6750 §2) ---------------------------------------------------------------


def test_bearer_scheme_and_carrier_rules() -> None:
    token = sign_rs256(_header(), _claims())

    async def auth(header: str | None, others: bool = False) -> Any:
        issuer = FakeIssuer()
        issuer.publish(key(0))
        jwks, _ = make_client(issuer, CLOCK)
        return await BearerAuthenticator(verifier(CLOCK), jwks).authenticate(
            header, other_carriers=others
        )

    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert asyncio.run(auth(f"{scheme} {token}")).subject == "client:abc"
    for bad in (f"Basic {token}", f"Bearer{token}", "", "Bearer"):
        with pytest.raises((MissingToken, InvalidToken)):
            asyncio.run(auth(bad))
    for bad in (f"Bearer {token} extra", f'Bearer "{token}"', f"Bearer {token}\x00"):
        with pytest.raises(InvalidToken):
            asyncio.run(auth(bad))
    with pytest.raises(InvalidRequest):
        asyncio.run(auth(f"Bearer {token}", others=True))
    with pytest.raises(InvalidRequest):
        asyncio.run(auth(None, others=True))


def test_error_descriptions_are_safe_for_www_authenticate() -> None:
    error = InvalidToken('evil "quote" \\ back\r\nInjected: yes \x00' + "x" * 500)
    assert all(" " <= c <= "~" and c not in '"\\' for c in error.description)
    assert len(error.description) <= 200
