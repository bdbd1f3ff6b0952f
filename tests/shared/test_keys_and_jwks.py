"""shared.keys and shared.jwks: thumbprints, PEM loading, the public JWKS allow-list."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.errors import ConfigurationError, JWKSError
from shared.jwks import build_jwks, encode_jwks, jwks_etag, parse_jwk, parse_jwks
from shared.keys import generate_signing_key, load_signing_key, thumbprint


def test_kid_is_rfc7638_thumbprint() -> None:
    # RFC 7638 §3.1 example key and its thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
        "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR"
        "0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
        "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    numbers = rsa.RSAPublicNumbers(65537, int.from_bytes(_b64d(n), "big"))
    assert thumbprint(numbers.public_key()) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _b64d(value: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_pem_round_trip_keeps_kid() -> None:
    key = generate_signing_key()
    assert load_signing_key(key.private_pem()).kid == key.kid


def test_load_rejects_garbage_small_and_non_rsa_keys() -> None:
    with pytest.raises(ConfigurationError):
        load_signing_key(b"not a pem")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError, match="2048"):
        load_signing_key(_pem(small))
    with pytest.raises(ConfigurationError, match="RSA"):
        load_signing_key(_pem(ec.generate_private_key(ec.SECP256R1())))


def test_an_inconsistent_key_is_refused_unless_it_comes_from_our_own_seal() -> None:
    """A PEM from outside gets cryptography's full RSA validation; only a key out of the
    issuer's authenticated seal (sealed_by_us) skips it, to load in 0.1 ms instead of 140+."""
    good = generate_signing_key().private_key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=good.p,
        q=good.q,
        d=good.d + 2,  # no longer the inverse of e: signatures would be wrong
        dmp1=good.dmp1,
        dmq1=good.dmq1,
        iqmp=good.iqmp,
        public_numbers=good.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    with pytest.raises(ConfigurationError, match="not a valid"):
        load_signing_key(_pem(broken))
    assert load_signing_key(_pem(broken), sealed_by_us=True).kid == thumbprint(broken.public_key())


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_public_jwk_has_only_public_members() -> None:
    jwk = generate_signing_key().public_jwk()
    assert set(jwk) == {"kty", "use", "alg", "kid", "n", "e"}
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"


def test_build_jwks_drops_everything_not_allow_listed() -> None:
    leaky = {**generate_signing_key().public_jwk(), "d": "secret", "p": "x", "x5c": ["..."]}
    doc = build_jwks([leaky])
    assert set(doc["keys"][0]) == {"kty", "use", "alg", "kid", "n", "e"}


def test_etag_follows_bytes() -> None:
    a = encode_jwks(build_jwks([generate_signing_key().public_jwk()]))
    b = encode_jwks(build_jwks([generate_signing_key().public_jwk()]))
    assert jwks_etag(a) == jwks_etag(a) != jwks_etag(b)
    assert json.loads(a)["keys"]


def test_parse_jwks_round_trip_and_bad_documents() -> None:
    jwk = generate_signing_key().public_jwk()
    parsed = parse_jwks({"keys": [jwk]})
    assert set(parsed.keys) == {jwk["kid"]}
    for bad in ([], {"keys": {}}, {"nokeys": []}, "x"):
        with pytest.raises(JWKSError):
            parse_jwks(bad)
    with pytest.raises(JWKSError, match="cap"):
        parse_jwks({"keys": [jwk] * 3}, max_keys=2)


def test_parse_jwk_refuses_private_and_wrong_use() -> None:
    jwk = generate_signing_key().public_jwk()
    for bad in (
        {**jwk, "d": "AQAB"},
        {**jwk, "use": "enc"},
        {**jwk, "alg": "RS512"},
        {**jwk, "kty": "EC"},
        {**jwk, "key_ops": ["sign"]},
        {**jwk, "e": "AQAB="},
    ):
        with pytest.raises(ValueError):
            parse_jwk(bad)
    assert parse_jwk({**jwk, "key_ops": ["verify"]}).kid == jwk["kid"]


def _b64e(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def test_parse_jwk_refuses_exponents_other_than_65537() -> None:
    """Issue 13.4: e = 3 (and any other odd exponent) is refused, not used to verify."""
    jwk = generate_signing_key().public_jwk()
    for e in (3, 5, 17, 257, 65539, 2**32 + 1):
        with pytest.raises(ValueError, match="exponent must be 65537"):
            parse_jwk({**jwk, "e": _b64e(_uint(e))})
    assert parse_jwk({**jwk, "e": "AQAB"}).kid == jwk["kid"]


def test_parse_jwk_refuses_a_leading_zero_octet_in_n_or_e() -> None:
    """RFC 7518 §6.3.1.1: n and e are the minimal big-endian octets; a leading zero octet (what
    a DER INTEGER would carry for a set top bit) is a malformed key, skipped."""
    jwk = generate_signing_key().public_jwk()
    n = _b64d(jwk["n"])
    assert n[0] != 0
    for member, value in (("n", b"\x00" + n), ("e", b"\x00\x01\x00\x01"), ("e", b"\x00" * 2)):
        with pytest.raises(ValueError, match="minimal encoding"):
            parse_jwk({**jwk, member: _b64e(value)})


def test_parse_jwks_skips_weak_and_malformed_keys_and_keeps_the_good_one() -> None:
    good = generate_signing_key().public_jwk()
    other = generate_signing_key().public_jwk()
    n = _b64d(other["n"])
    parsed = parse_jwks(
        {
            "keys": [
                {**other, "kid": "e3", "e": "Aw"},
                {**other, "kid": "n0", "n": _b64e(b"\x00" + n)},
                {**other, "kid": "e0", "e": "AAEAAQ"},
                good,
            ]
        }
    )
    assert set(parsed.keys) == {good["kid"]}
    assert len(parsed.skipped) == 3
    assert all(kid in " ".join(parsed.skipped) for kid in ("'e3'", "'n0'", "'e0'"))


def test_public_jwk_is_minimal_and_accepted() -> None:
    jwk = generate_signing_key().public_jwk()
    assert jwk["e"] == "AQAB"
    assert _b64d(jwk["n"])[0] != 0
    assert parse_jwk(jwk).kid == jwk["kid"]


def test_load_refuses_a_signing_key_with_another_exponent() -> None:
    odd = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(ConfigurationError, match="65537"):
        load_signing_key(_pem(odd))
