"""shared.id_tokens: at_hash as OpenID Connect Core computes it, the claims, the signature
(verified by PyJWT, a library no one here wrote), and every check of an id_token_hint."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from shared.errors import InvalidToken
from shared.id_tokens import at_hash, check_id_token_hint, id_token_claims
from shared.jwks import VerificationKey, parse_jwk
from shared.jws import b64url
from shared.keys import SigningKey, generate_signing_key
from shared.tokens import TokenSigner, access_token_claims

ISS = "https://issuer.test"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return generate_signing_key()


def test_at_hash_matches_the_openid_connect_example() -> None:
    # OpenID Connect Core 1.0 Appendix A.4 (response_type "id_token token"): this access token's
    # at_hash, computed by §3.1.3.6 (left half of SHA-256, base64url, no padding).
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ"


def _claims(**changes: Any) -> dict[str, Any]:
    claims = id_token_claims(
        issuer=ISS,
        subject="user:u1",
        client_id="web",
        now=NOW,
        ttl=300,
        auth_time=NOW - 42.7,
        sid="session-1",
        access_token="the.access.token",
        nonce="n-0S6_WzA2Mj",
    )
    claims.update(changes)
    return claims


def test_claims() -> None:
    assert _claims() == {
        "iss": ISS,
        "sub": "user:u1",
        "aud": "web",
        "azp": "web",
        "exp": int(NOW) + 300,
        "iat": int(NOW),
        "auth_time": int(NOW - 42.7),
        "sid": "session-1",
        "at_hash": at_hash("the.access.token"),
        "nonce": "n-0S6_WzA2Mj",
    }
    without = id_token_claims(
        issuer=ISS, subject="user:u1", client_id="web", now=NOW, ttl=300,
        auth_time=NOW, sid="s", access_token="t",
    )  # fmt: skip
    assert "nonce" not in without


def test_signed_id_token_verifies_with_pyjwt(key: SigningKey) -> None:
    token = TokenSigner(key).sign_id_token(_claims())
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    public = jwt.PyJWK(key.public_jwk()).key
    claims = jwt.decode(
        token, public, algorithms=["RS256"], audience="web", issuer=ISS,
        options={"verify_exp": False, "verify_iat": False},
    )  # fmt: skip
    assert claims == _claims()


def test_access_tokens_carry_sid_only_when_given() -> None:
    common: dict[str, Any] = dict(
        issuer=ISS, subject="user:u1", audience="photos", client_id="web",
        scopes=frozenset({"openid"}), now=NOW, ttl=60,
    )  # fmt: skip
    assert "sid" not in access_token_claims(**common)
    assert access_token_claims(**common, sid="session-1")["sid"] == "session-1"


# -- id_token_hint -----------------------------------------------------------------------------


def _keys(*keys: SigningKey) -> Any:
    known: dict[str, VerificationKey] = {k.kid: parse_jwk(k.public_jwk()) for k in keys}
    return known.get


def _forge(key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token with any header, signed by ``key`` (RS256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = b64url(json.dumps(header).encode()) + b"." + b64url(json.dumps(claims).encode())
    signature = key.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + b64url(signature)).decode()


def test_hint_names_client_subject_and_session_even_when_expired(key: SigningKey) -> None:
    token = TokenSigner(key).sign_id_token(_claims(exp=1, iat=0))
    hint = check_id_token_hint(token, issuer=ISS, key_for=_keys(key))
    assert (hint.client_id, hint.subject, hint.sid) == ("web", "user:u1", "session-1")


def test_hint_with_azp_among_several_audiences(key: SigningKey) -> None:
    token = TokenSigner(key).sign_id_token(_claims(aud=["other", "web"], azp="web"))
    assert check_id_token_hint(token, issuer=ISS, key_for=_keys(key)).client_id == "web"


def _refused(token: str, key: SigningKey, match: str) -> None:
    with pytest.raises(InvalidToken, match=match):
        check_id_token_hint(token, issuer=ISS, key_for=_keys(key))


def test_hint_from_an_unknown_key_is_refused(key: SigningKey, other_key: SigningKey) -> None:
    _refused(TokenSigner(other_key).sign_id_token(_claims()), key, "not signed by a key")


def test_hint_signed_by_another_key_under_our_kid_is_refused(
    key: SigningKey, other_key: SigningKey
) -> None:
    token = _forge(other_key, {"alg": "RS256", "typ": "JWT", "kid": key.kid}, _claims())
    _refused(token, key, "signature is invalid")


def test_an_access_token_is_no_hint(key: SigningKey) -> None:
    _refused(TokenSigner(key).sign(_claims()), key, "not an ID token")


def test_hint_with_alg_none_or_hs256_is_refused(key: SigningKey) -> None:
    unsigned = (
        b64url(json.dumps({"alg": "none", "kid": key.kid}).encode()).decode()
        + "."
        + b64url(json.dumps(_claims()).encode()).decode()
        + "."
    )
    _refused(unsigned, key, "algorithm")
    hs = jwt.encode(_claims(), "secret" * 8, algorithm="HS256", headers={"kid": key.kid})
    _refused(hs, key, "algorithm")


def test_hint_without_kid_is_refused(key: SigningKey) -> None:
    _refused(_forge(key, {"alg": "RS256", "typ": "JWT"}, _claims()), key, "no kid")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"iss": "https://elsewhere.test"}, "another issuer"),
        ({"sub": ""}, "no subject"),
        ({"sub": 7}, "no subject"),
        ({"aud": ["a", "b"], "azp": None}, "no single client"),
        ({"aud": ["a", "b"], "azp": "c"}, "no single client"),
        ({"aud": 5, "azp": None}, "no single client"),
        ({"aud": "", "azp": None}, "no single client"),
    ],
)
def test_hint_claims_are_checked(key: SigningKey, changes: dict[str, Any], match: str) -> None:
    _refused(TokenSigner(key).sign_id_token(_claims(**changes)), key, match)


def test_hint_tampered_payload_is_refused(key: SigningKey) -> None:
    header, _payload, signature = TokenSigner(key).sign_id_token(_claims()).split(".")
    forged = b64url(json.dumps(_claims(sub="user:admin")).encode()).decode()
    _refused(f"{header}.{forged}.{signature}", key, "signature is invalid")


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 9000, "é.é.é"])
def test_garbage_hints_are_invalid_tokens(key: SigningKey, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        check_id_token_hint(garbage, issuer=ISS, key_for=_keys(key))
