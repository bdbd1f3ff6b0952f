"""shared.tokens: signing, and one negative test per claim and header check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.clock import FakeClock
from shared.errors import InvalidToken
from shared.jwks import parse_jwk
from shared.jws import b64url
from shared.keys import SigningKey, generate_signing_key
from shared.tokens import TokenSigner, TokenVerifier, access_token_claims

ISS = "https://issuer.test"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def _claims(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    claims = access_token_claims(
        issuer=ISS,
        subject="client:c1",
        audience="photos",
        client_id="c1",
        scopes=frozenset({"photos:read"}),
        now=clock(),
        ttl=900,
    )
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _verify(key: SigningKey, clock: FakeClock, token: str, audience: str = "photos") -> Any:
    verifier = TokenVerifier(issuer=ISS, audience=audience, clock=clock, leeway=30)
    jwt = verifier.parse(token)
    return verifier.verify(jwt, parse_jwk(key.public_jwk()))


def test_round_trip(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock))
    access = _verify(key, clock, token)
    assert access.subject == "client:c1"
    assert access.audience == ("photos",)
    assert access.scopes == frozenset({"photos:read"})
    assert access.kid == key.kid


def test_header_is_rfc9068(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock))
    verifier = TokenVerifier(issuer=ISS, audience="photos", clock=clock)
    assert verifier.parse(token).header == {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}


def test_tokens_verify_with_independent_jose_libraries(key: SigningKey, clock: FakeClock) -> None:
    """The signer is hand-assembled for speed: joserfc and PyJWT must agree it is a valid JWS."""
    import jwt as pyjwt
    from joserfc import jws
    from joserfc.jwk import RSAKey

    claims = {**_claims(clock), "sub": "user:zoë"}  # non-ASCII text survives the encoding
    token = TokenSigner(key).sign(claims)
    public = RSAKey.import_key(key.public_jwk())
    obj = jws.deserialize_compact(token, public, algorithms=["RS256"])
    assert obj.protected == {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    assert json.loads(obj.payload) == claims
    decoded = pyjwt.decode(
        token,
        key.public_key,
        algorithms=["RS256"],
        audience="photos",
        issuer=ISS,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert decoded == claims


def test_audience_array_accepted(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock, aud=["contacts", "photos"]))
    assert _verify(key, clock, token).audience == ("contacts", "photos")


NEGATIVE: dict[str, dict[str, Any]] = {
    "missing_iss": {"iss": _DROP},
    "missing_sub": {"sub": _DROP},
    "missing_aud": {"aud": _DROP},
    "missing_exp": {"exp": _DROP},
    "missing_iat": {"iat": _DROP},
    "missing_jti": {"jti": _DROP},
    "missing_client_id": {"client_id": _DROP},
    "wrong_iss": {"iss": "https://issuer.test/"},
    "wrong_aud": {"aud": "contacts"},
    "aud_substring": {"aud": "photo"},
    "aud_array_without_us": {"aud": ["contacts"]},
    "aud_empty_array": {"aud": []},
    "aud_number": {"aud": 7},
    "aud_object": {"aud": {"photos": True}},
    "aud_array_of_numbers": {"aud": [1, "photos"]},
    "exp_string": {"exp": "1900000000"},
    "exp_bool": {"exp": True},
    "iat_string": {"iat": "now"},
    "nbf_string": {"nbf": "0"},
    "sub_number": {"sub": 42},
    "sub_empty": {"sub": ""},
    "client_id_list": {"client_id": ["c1"]},
    "jti_null": {"jti": None},
    "scope_list": {"scope": ["photos:read"]},
    "iss_null": {"iss": None},
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_bad_claim_is_invalid_token(key: SigningKey, clock: FakeClock, case: str) -> None:
    token = TokenSigner(key).sign(_claims(clock, **NEGATIVE[case]))
    with pytest.raises(InvalidToken):
        _verify(key, clock, token)


def test_expired_beyond_leeway(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock))
    clock.advance(900 + 29)
    _verify(key, clock, token)  # within the 30 s leeway
    clock.advance(2)
    with pytest.raises(InvalidToken, match="expired"):
        _verify(key, clock, token)


def test_not_yet_valid(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock, nbf=int(clock()) + 120))
    with pytest.raises(InvalidToken, match="not yet valid"):
        _verify(key, clock, token)


def test_issued_in_the_future(key: SigningKey, clock: FakeClock) -> None:
    token = TokenSigner(key).sign(_claims(clock, iat=int(clock()) + 120, nbf=_DROP))
    with pytest.raises(InvalidToken, match="future"):
        _verify(key, clock, token)


def test_other_key_signature_fails(key: SigningKey, clock: FakeClock) -> None:
    other = generate_signing_key()
    token = TokenSigner(other).sign(_claims(clock))
    verifier = TokenVerifier(issuer=ISS, audience="photos", clock=clock)
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(verifier.parse(token), parse_jwk(key.public_jwk()))


def test_typ_must_be_at_jwt(key: SigningKey, clock: FakeClock) -> None:
    import jwt as pyjwt

    for typ in ("JWT", "jwt", "at+JWT+x", None):
        headers: dict[str, Any] = {"kid": key.kid}
        if typ is not None:
            headers["typ"] = typ
        token = pyjwt.encode(_claims(clock), key.private_key, algorithm="RS256", headers=headers)
        if typ is None:  # PyJWT adds typ=JWT unless told otherwise
            assert pyjwt.get_unverified_header(token)["typ"] == "JWT"
        with pytest.raises(InvalidToken, match="type"):
            _verify(key, clock, token)


def test_application_at_jwt_accepted(key: SigningKey, clock: FakeClock) -> None:
    import jwt as pyjwt

    token = pyjwt.encode(
        _claims(clock),
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "application/at+jwt"},
    )
    assert _verify(key, clock, token).subject == "client:c1"


@pytest.mark.parametrize("alg", ["RS384", "PS256"])
def test_algorithm_pinned_from_configuration(key: SigningKey, clock: FakeClock, alg: str) -> None:
    import jwt as pyjwt

    token = pyjwt.encode(
        _claims(clock), key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": "at+jwt"}
    )
    with pytest.raises(InvalidToken, match="algorithm"):
        _verify(key, clock, token)


def test_missing_kid(key: SigningKey, clock: FakeClock) -> None:
    import jwt as pyjwt

    token = pyjwt.encode(
        _claims(clock), key.private_key, algorithm="RS256", headers={"typ": "at+jwt"}
    )
    with pytest.raises(InvalidToken, match="kid"):
        _verify(key, clock, token)


def test_verifier_refuses_non_rs256_configuration() -> None:
    with pytest.raises(ValueError, match="RS256"):
        TokenVerifier(issuer=ISS, audience="photos", algorithm="HS256")


# -- what the verifier accepts can be served back (/whoami writes the claims as JSON) -------------


def _sign_raw(key: SigningKey, payload: bytes, header: bytes | None = None) -> str:
    """A token signed by ``key`` over exactly these payload (and header) bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if header is None:
        header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}).encode()
    signing_input = b64url(header) + b"." + b64url(payload)
    signature = key.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + b64url(signature)).decode("ascii")


def _must_serialise(access: Any) -> None:
    json.dumps(dict(access.claims), ensure_ascii=False, allow_nan=False).encode("utf-8")


@pytest.mark.parametrize("claim", ["sub", "jti", "client_id", "scope", "extra"])
def test_escaped_lone_surrogate_in_a_signed_claim_is_invalid_token(
    key: SigningKey, clock: FakeClock, claim: str
) -> None:
    # The signer's ASCII-only JSON writes a lone surrogate as the escape "\ud800".
    token = TokenSigner(key).sign(_claims(clock, **{claim: "a\ud800"}))
    assert "\\ud800" in json.dumps(_claims(clock, **{claim: "a\ud800"}))
    with pytest.raises(InvalidToken, match="payload is malformed"):
        _verify(key, clock, token)


def test_lone_surrogate_in_a_signed_header_is_invalid_token(
    key: SigningKey, clock: FakeClock
) -> None:
    for header in (
        b'{"alg":"RS256","typ":"at+jwt","kid":"' + key.kid.encode() + b'","x":"\\udfff"}',
        b'{"alg":"RS256","typ":"at+jwt","kid":"\\ud800' + key.kid.encode() + b'"}',
        b'{"alg":"RS256","typ":"at+jwt","kid":"' + key.kid.encode() + b'","\xed\xa0\x80":1}',
    ):
        token = _sign_raw(key, json.dumps(_claims(clock)).encode(), header)
        with pytest.raises(InvalidToken, match="header is malformed"):
            _verify(key, clock, token)


def test_valid_unicode_in_claims_is_accepted_and_serialisable(
    key: SigningKey, clock: FakeClock
) -> None:
    token = TokenSigner(key).sign(_claims(clock, sub="user:\U0001f600 zo\u00eb", extra="\ud7ff"))
    access = _verify(key, clock, token)
    assert access.subject == "user:\U0001f600 zo\u00eb"
    _must_serialise(access)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", 10**400),
        ("exp", -(10**400)),
        ("iat", -(10**400)),
        ("nbf", -(10**400)),
        ("exp", 2**1024),
    ],
)
def test_numeric_dates_beyond_a_float_are_invalid_token(
    key: SigningKey, clock: FakeClock, name: str, value: int
) -> None:
    token = TokenSigner(key).sign(_claims(clock, **{name: value}))
    with pytest.raises(InvalidToken, match=f"'{name}' claim must be a number"):
        _verify(key, clock, token)


def test_numeric_dates_at_a_float_s_edge_are_fine(key: SigningKey, clock: FakeClock) -> None:
    access = _verify(key, clock, TokenSigner(key).sign(_claims(clock, exp=2**1023)))
    assert access.expires_at == float(2**1023)


@pytest.mark.parametrize(
    "extra", [b'"x":1e400', b'"x":-1e999', b'"x":' + b"[" * 40 + b"1" + b"]" * 40]
)
def test_claims_that_cannot_be_served_back_are_invalid_token(
    key: SigningKey, clock: FakeClock, extra: bytes
) -> None:
    payload = json.dumps(_claims(clock)).encode()[:-1] + b"," + extra + b"}"
    with pytest.raises(InvalidToken, match="payload is malformed"):
        _verify(key, clock, _sign_raw(key, payload))
