"""shared.dpop: every RFC 9449 §4.3 check on a DPoP proof, one refusal test per rule, with real EC
and RSA keys, proofs built by hand and by PyJWT, and an injected clock."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

import shared.dpop
from shared.clock import FakeClock
from shared.dpop import DPoPProof, DPoPSettings, DPoPVerifier, access_token_hash
from shared.dpop_errors import InvalidDPoPProof, UseDPoPNonce, dpop_challenge, one_proof
from shared.dpop_htu import normalize_htu
from shared.dpop_keys import thumbprint
from shared.dpop_replay import ReplayCache, ReplayCacheFull
from shared.errors import InvalidToken, render_error
from shared.jws import b64url_encode
from tests.shared.test_dpop_support import (
    EC_KEY,
    EC_KEY_2,
    NOW,
    RSA_KEY,
    URL,
    b64int,
    claims,
    make_proof,
    public_jwk,
    resign,
    segment,
)

ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


def verifier(**kwargs: Any) -> DPoPVerifier:
    settings = kwargs.pop("settings", None)
    return DPoPVerifier(settings, clock=kwargs.pop("clock", FakeClock(NOW)), **kwargs)


def refused(proof: str, match: str, *, v: DPoPVerifier | None = None, **kw: Any) -> None:
    kw.setdefault("method", "GET")
    kw.setdefault("url", URL)
    with pytest.raises(InvalidDPoPProof, match=match) as info:
        (v or verifier()).verify(proof, **kw)
    assert type(info.value) is InvalidDPoPProof
    assert info.value.error == "invalid_dpop_proof"
    assert info.value.status_code == 401


# --- Accepted proofs ---------------------------------------------------------------------------


def test_a_valid_es256_proof_is_accepted() -> None:
    payload = claims()
    result = verifier().verify(make_proof(payload=payload), method="GET", url=URL)
    assert isinstance(result, DPoPProof)
    assert result.jti == payload["jti"]
    assert (result.htm, result.htu, result.iat, result.alg) == ("GET", URL, NOW, "ES256")
    assert result.jkt == ECKey.import_key(public_jwk(EC_KEY)).thumbprint()  # independent RFC 7638
    assert isinstance(result.public_key, ec.EllipticCurvePublicKey)
    assert result.public_key.public_numbers() == EC_KEY.public_key().public_numbers()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.jti = "other"  # type: ignore[misc]


@pytest.mark.parametrize(("key", "alg"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256")])
def test_a_proof_encoded_by_pyjwt_is_accepted(key: Any, alg: str) -> None:
    proof = jwt.encode(
        claims(ath=access_token_hash(ACCESS_TOKEN)),
        key,
        algorithm=alg,
        headers={"typ": "dpop+jwt", "jwk": public_jwk(key)},
    )
    jkt = thumbprint(public_jwk(key))
    result = verifier().verify(
        proof, method="GET", url=URL, access_token=ACCESS_TOKEN, expected_jkt=jkt
    )
    assert result.jkt == jkt
    assert result.alg == alg


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (RSA_KEY, "PS256"),
        (RSA_KEY, "RS512"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512"),
    ],
)
def test_other_algorithms_once_allowed(key: Any, alg: str) -> None:
    proof = make_proof(key, alg)
    refused(proof, "alg is not allowed")  # not in the default allow-list
    allowing = verifier(settings=DPoPSettings(algorithms=(alg,)))
    assert allowing.verify(proof, method="GET", url=URL).alg == alg


def test_the_thumbprint_matches_rfc_9449_and_joserfc() -> None:
    # RFC 9449 §4.2's example key and its jkt as given in §6.1.
    example = {
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256",
    }
    assert thumbprint(example) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    rsa_jwk = public_jwk(RSA_KEY)
    assert (
        thumbprint({**rsa_jwk, "kid": "x", "use": "sig"}) == RSAKey.import_key(rsa_jwk).thumbprint()
    )
    with pytest.raises(ValueError, match="EC and RSA"):
        thumbprint({"kty": "oct", "k": "AAAA"})
    with pytest.raises(ValueError, match="lacks"):
        thumbprint({"kty": "EC", "crv": "P-256", "x": "AA"})


# --- The compact JWS ---------------------------------------------------------------------------


def _parts(proof: str) -> list[str]:
    return proof.split(".")


def test_a_proof_over_the_size_cap_is_refused() -> None:
    big = make_proof(payload=claims(pad="x" * 9000))
    refused(big, "too large")
    small = verifier(settings=DPoPSettings(max_proof_bytes=100))
    refused(make_proof(), "too large", v=small)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda p: p + "é", "malformed"),
        (lambda p: p.rsplit(".", 1)[0], "not a compact JWS"),
        (lambda p: p + ".x", "not a compact JWS"),
        (lambda p: "." + p.split(".", 1)[1], "header is malformed"),
        (lambda p: _parts(p)[0] + "=." + ".".join(_parts(p)[1:]), "header is malformed"),
        (lambda p: ".".join(_parts(p)[:2]) + ".+/+/", "payload or signature is malformed"),
    ],
)
def test_malformed_compact_serialisations_are_refused(mangle: Any, match: str) -> None:
    refused(mangle(make_proof()), match)


def test_non_canonical_base64url_is_refused() -> None:
    # '{}' is "e30"; "e31" decodes to the same bytes with a non-zero spare bit.
    header, payload, _ = _parts(make_proof())
    refused(resign(EC_KEY, "ES256", header, "e31"), "payload or signature is malformed")
    refused(resign(EC_KEY, "ES256", "e31", payload), "header is malformed")


def test_duplicate_members_are_refused() -> None:
    header, payload, _ = _parts(make_proof())
    jwk = json.dumps(public_jwk(EC_KEY))
    dup_header = f'{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{jwk}}}'.encode()
    refused(resign(EC_KEY, "ES256", segment(dup_header), payload), "header is malformed")
    body = json.dumps(claims())[:-1] + ', "htm": "POST"}'
    refused(resign(EC_KEY, "ES256", header, segment(body.encode())), "payload or signature")


def test_a_json_array_payload_is_refused() -> None:
    header, _, _ = _parts(make_proof())
    refused(resign(EC_KEY, "ES256", header, segment([1, 2])), "payload or signature")


@pytest.mark.parametrize(
    "member",
    [
        {"crit": ["exp"]},
        {"jku": "https://evil.example/jwks"},
        {"x5u": "https://evil.example/cert"},
        {"x5c": ["MIIB"]},
    ],
)
def test_header_members_that_point_elsewhere_are_refused(member: dict[str, Any]) -> None:
    refused(make_proof(header=member), "not allowed")


# --- typ and alg -------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "DPoP+JWT", "application/dpop+jwt", 1])
def test_typ_must_be_exactly_dpop_jwt(typ: Any) -> None:
    refused(make_proof(header={"typ": typ}, drop=("typ",) if typ is None else ()), "typ")


@pytest.mark.parametrize("alg", ["none", "HS256", "PS256", "ES384", "", 256, None])
def test_alg_outside_the_allow_list_is_refused(alg: Any) -> None:
    proof = make_proof(header={"alg": alg}, drop=("alg",) if alg is None else ())
    refused(proof, "alg is not allowed")


def test_an_alg_none_proof_without_signature_is_refused() -> None:
    header = segment({"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(EC_KEY)})
    refused(f"{header}.{segment(claims())}.", "alg is not allowed")


def test_an_hmac_proof_keyed_with_the_public_key_is_refused() -> None:
    # The classic confusion: HS256 with the public key's bytes as the secret.
    jwk = public_jwk(RSA_KEY)
    proof = jwt.encode(claims(), "secret-" * 6, algorithm="HS256", headers={"typ": "dpop+jwt"})
    header = segment({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk})
    refused(header + "." + proof.split(".", 1)[1], "alg is not allowed")
    with pytest.raises(ValueError, match="algorithms"):
        DPoPSettings(algorithms=("HS256",))
    with pytest.raises(ValueError, match="algorithms"):
        DPoPSettings(algorithms=("none",))
    with pytest.raises(ValueError, match="algorithms"):
        DPoPSettings(algorithms=())


# --- jwk -------------------------------------------------------------------------------------


def test_a_proof_without_jwk_is_refused() -> None:
    refused(make_proof(drop=("jwk",)), "no jwk")


def _ec_private_jwk() -> dict[str, str]:
    d = EC_KEY.private_numbers().private_value
    return {**public_jwk(EC_KEY), "d": b64int(d, 32)}


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_a_jwk_with_private_members_is_refused(member: str) -> None:
    refused(make_proof(RSA_KEY, "RS256", jwk={**public_jwk(RSA_KEY), member: "AQAB"}), "private")
    refused(make_proof(jwk={**public_jwk(EC_KEY), member: "AQAB"}), "private")


def test_a_full_private_ec_jwk_is_refused() -> None:
    refused(make_proof(jwk=_ec_private_jwk()), "private")


def test_a_symmetric_key_is_refused() -> None:
    refused(make_proof(jwk={"kty": "oct", "k": "c2VjcmV0"}), "private")
    refused(make_proof(jwk={"kty": "oct"}), "not a key for its alg")


@pytest.mark.parametrize(
    ("key", "alg", "jwk"),
    [
        (EC_KEY, "ES256", public_jwk(RSA_KEY)),  # RSA key, EC alg
        (RSA_KEY, "RS256", public_jwk(EC_KEY)),  # EC key, RSA alg
        (EC_KEY, "ES256", {**public_jwk(EC_KEY), "kty": "OKP"}),
        (EC_KEY, "ES256", {**public_jwk(EC_KEY), "alg": "ES384"}),
        (RSA_KEY, "RS256", {**public_jwk(RSA_KEY), "alg": "PS256"}),
        (EC_KEY, "ES256", "not an object"),
    ],
)
def test_a_jwk_of_another_type_than_its_alg_is_refused(key: Any, alg: str, jwk: Any) -> None:
    refused(make_proof(key, alg, jwk=jwk), "jwk")


def test_an_ec_key_on_another_curve_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(make_proof(p384, "ES384", header={"alg": "ES256"}), "another curve")


def test_ec_coordinates_must_have_the_curve_length_and_be_on_the_curve() -> None:
    jwk = public_jwk(EC_KEY)
    short = {**jwk, "x": b64url_encode(b"\x01" * 31)}
    refused(make_proof(jwk=short), "wrong length")
    off_curve = {**jwk, "y": b64int(EC_KEY.public_key().public_numbers().y ^ 1, 32)}
    refused(make_proof(jwk=off_curve), "not a valid public key")
    refused(make_proof(jwk={**jwk, "x": "AA=="}), "malformed")
    refused(make_proof(jwk={**jwk, "y": 5}), "lacks y")


def test_rsa_keys_too_small_odd_exponent_or_padded_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    refused(make_proof(small, "RS256"), "key size")
    three = rsa.generate_private_key(public_exponent=3, key_size=2048)
    refused(make_proof(three, "RS256"), "exponent")
    jwk = public_jwk(RSA_KEY)
    n = RSA_KEY.public_key().public_numbers().n
    padded = {**jwk, "n": b64url_encode(b"\x00" + n.to_bytes(256, "big"))}
    refused(make_proof(RSA_KEY, "RS256", jwk=padded), "minimally encoded")


# --- The signature -----------------------------------------------------------------------------


def test_a_proof_signed_by_another_key_is_refused() -> None:
    refused(make_proof(EC_KEY_2, jwk=public_jwk(EC_KEY)), "signature is invalid")
    refused(make_proof(RSA_KEY, "RS256", jwk=public_jwk(EC_KEY)), "not a key for its alg")
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(make_proof(other_rsa, "RS256", jwk=public_jwk(RSA_KEY)), "signature is invalid")


def test_a_tampered_payload_or_bad_signature_is_refused() -> None:
    header, _, signature = _parts(make_proof())
    other = segment(claims(htm="POST"))
    refused(f"{header}.{other}.{signature}", "signature is invalid")
    refused(f"{header}.{segment(claims())}.{signature[:40]}", "signature is invalid")
    refused(f"{header}.{segment(claims())}.", "signature is invalid")
    rsa_proof = make_proof(RSA_KEY, "RS256")
    h, _p, s = _parts(rsa_proof)
    refused(f"{h}.{segment(claims(htm='POST'))}.{s}", "signature is invalid")


# --- The memos: a known header and a known URL are not worked out again ---------------------


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """Count the calls of shared.dpop's ``name`` (what a memo hit must not call)."""
    calls: list[object] = []
    real = getattr(shared.dpop, name)

    def counted(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(shared.dpop, name, counted)
    return calls


def test_a_known_header_is_not_checked_again_but_every_signature_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = verifier()
    keys = _counting(monkeypatch, "public_key_from_jwk")
    first = v.verify(make_proof(), method="GET", url=URL)
    second = v.verify(make_proof(), method="GET", url=URL)  # the same header, a new jti
    assert len(keys) == 1
    assert (second.jkt, second.alg) == (first.jkt, first.alg)
    header, payload, _ = _parts(make_proof())
    refused(resign(EC_KEY_2, "ES256", header, payload), "signature is invalid", v=v)
    tampered = f"{header}.{segment(claims(htm='POST'))}.{_parts(make_proof())[2]}"
    refused(tampered, "signature is invalid", v=v)
    assert len(keys) == 1


def test_a_header_whose_proof_failed_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    v = verifier()
    keys = _counting(monkeypatch, "public_key_from_jwk")
    forged = make_proof(EC_KEY_2, jwk=public_jwk(EC_KEY))  # EC_KEY's header, another's signature
    refused(forged, "signature is invalid", v=v)
    refused(forged.rsplit(".", 1)[0] + ".", "signature is invalid", v=v)
    assert len(keys) == 2  # checked in full each time


def test_a_header_refused_by_its_checks_is_refused_every_time() -> None:
    v = verifier()
    for _ in range(2):
        refused(make_proof(header={"typ": "jwt"}), "typ is not dpop", v=v)
        refused(make_proof(jwk={**public_jwk(EC_KEY), "d": "x"}), "private key", v=v)


def test_a_known_url_is_not_normalised_again_and_a_bad_one_is_refused_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = verifier()
    urls = _counting(monkeypatch, "normalize_htu")
    for _ in range(3):
        v.verify(make_proof(), method="GET", url=URL)
    assert urls == [URL]  # the proof's htu and the request URL are the same string
    for _ in range(2):
        refused(make_proof(), "request URL cannot be matched", v=v, url="ftp://x/y")
    refused(make_proof(payload=claims(htu="mailto:a@b")), "not an http", v=v)


def test_the_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.dpop, "HEADER_MEMO_ENTRIES", 3)
    monkeypatch.setattr(shared.dpop, "URL_MEMO_ENTRIES", 2)
    v = verifier()
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(5)]
    for i, key in enumerate(keys):
        url = f"{URL}/{i}"
        v.verify(make_proof(key, payload=claims(htu=url)), method="GET", url=url)
        assert len(v._headers) <= 3
        assert len(v._urls) <= 2
    monkeypatch.setattr(shared.dpop, "HEADER_MEMO_MAX_CHARS", 10)
    fresh = verifier()
    fresh.verify(make_proof(), method="GET", url=URL)
    assert fresh._headers == {}  # a header segment over the size bound is not kept


# --- Claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("jti", [None, 1, "", "x" * 257, ["a"]])
def test_jti_must_be_a_bounded_string(jti: Any) -> None:
    refused(make_proof(payload=claims(jti=jti) if jti is not None else _without("jti")), "jti")


def _without(name: str) -> dict[str, Any]:
    body = claims()
    del body[name]
    return body


def test_a_jti_at_the_bound_is_accepted() -> None:
    verifier().verify(make_proof(payload=claims(jti="x" * 256)), method="GET", url=URL)


@pytest.mark.parametrize("htm", ["POST", "get", "", 1])
def test_htm_must_equal_the_request_method(htm: Any) -> None:
    refused(make_proof(payload=claims(htm=htm)), "htm")


def test_a_missing_htm_is_refused() -> None:
    refused(make_proof(payload=_without("htm")), "htm")


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        ("https://api.example.com/photos?x=1#frag", URL),
        (URL, URL + "?page=2"),
        ("HTTPS://API.Example.COM:443/photos", URL),
        ("https://api.example.com/a/./b/../photos", "https://api.example.com/a/photos"),
        ("https://api.example.com/%7Ephotos", "https://api.example.com/~photos"),
        ("https://api.example.com/a%2fb", "https://api.example.com/a%2Fb"),
        ("https://api.example.com", "https://api.example.com/"),
        ("http://api.example.com:80/photos", "http://api.example.com/photos"),
        ("https://[2001:DB8::1]:8443/p", "https://[2001:db8::1]:8443/p"),
    ],
)
def test_htu_matches_after_normalisation(htu: str, url: str) -> None:
    result = verifier().verify(make_proof(payload=claims(htu=htu)), method="GET", url=url)
    assert result.htu == normalize_htu(url)


@pytest.mark.parametrize(
    "htu",
    [
        "https://api.example.com/photos/",
        "https://api.example.com/Photos",
        "http://api.example.com/photos",
        "https://api.example.com:8443/photos",
        "https://other.example.com/photos",
        "https://api.example.com/photos%2F",
        "https://api.example.com/photos/..",
    ],
)
def test_htu_for_another_url_is_refused(htu: str) -> None:
    refused(make_proof(payload=claims(htu=htu)), "htu does not match")


@pytest.mark.parametrize(
    "htu",
    [
        "/photos",
        "api.example.com/photos",
        "ftp://api.example.com/photos",
        "https://user@api.example.com/photos",
        "https://api.example.com:99999/photos",
        "https://api.example.com/ph otos",
        "https://api.example.com/phötos",
        "https:///photos",
        "https://[::1/photos",
        "https://api.example.com/" + "a" * 2100,
        1,
    ],
)
def test_htu_that_is_not_an_absolute_http_url_is_refused(htu: Any) -> None:
    refused(make_proof(payload=claims(htu=htu)), "htu")


def test_a_missing_htu_is_refused() -> None:
    refused(make_proof(payload=_without("htu")), "htu is missing")


def test_a_request_url_that_cannot_be_normalised_is_refused() -> None:
    refused(make_proof(), "request URL", url="/photos")


@pytest.mark.parametrize("offset", [-60, -30, 0, 4.5, 5])
def test_iat_inside_the_window_is_accepted(offset: float) -> None:
    proof = make_proof(payload=claims(iat=NOW + offset))
    assert verifier().verify(proof, method="GET", url=URL).iat == NOW + offset


@pytest.mark.parametrize("offset", [-60.5, -3600, 5.5, 3600])
def test_iat_outside_the_window_is_refused(offset: float) -> None:
    refused(make_proof(payload=claims(iat=NOW + offset)), "iat is outside")


@pytest.mark.parametrize("iat", ["1700000000", True, None, [1]])
def test_iat_must_be_a_number(iat: Any) -> None:
    payload = claims(iat=iat) if iat is not None else _without("iat")
    refused(make_proof(payload=payload), "iat is missing or not a number")


def test_the_window_follows_the_settings_and_the_clock() -> None:
    clock = FakeClock(NOW)
    v = verifier(settings=DPoPSettings(max_age=10, max_future=0), clock=clock)
    refused(make_proof(payload=claims(iat=NOW + 1)), "iat", v=v)
    proof = make_proof(payload=claims(iat=NOW - 10))
    v.verify(proof, method="GET", url=URL)
    clock.advance(0.5)
    refused(make_proof(payload=claims(iat=NOW - 10)), "iat", v=v)


# --- ath, cnf.jkt, nonce -----------------------------------------------------------------------


def test_ath_must_match_the_access_token() -> None:
    good = claims(ath=access_token_hash(ACCESS_TOKEN))
    verifier().verify(make_proof(payload=good), method="GET", url=URL, access_token=ACCESS_TOKEN)
    refused(make_proof(payload=claims()), "ath", access_token=ACCESS_TOKEN)
    refused(make_proof(payload=claims(ath=access_token_hash("other"))), "ath", access_token="x")
    refused(make_proof(payload=claims(ath=1)), "ath", access_token=ACCESS_TOKEN)
    refused(make_proof(payload=claims(ath="é")), "ath", access_token=ACCESS_TOKEN)


def test_ath_is_base64url_sha256_of_the_token() -> None:
    # RFC 9449 §7.1's example: the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU" has ath
    # "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo".
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_the_key_must_be_the_one_the_token_is_bound_to() -> None:
    jkt = thumbprint(public_jwk(EC_KEY))
    verifier().verify(make_proof(), method="GET", url=URL, expected_jkt=jkt)
    refused(make_proof(EC_KEY_2), "bound to", expected_jkt=jkt)
    refused(make_proof(), "bound to", expected_jkt="é" + jkt[1:])
    refused(make_proof(), "bound to", expected_jkt="")


def test_a_nonce_policy_demands_its_nonce() -> None:
    seen: list[str | None] = []

    def policy(nonce: str | None) -> str | None:
        seen.append(nonce)
        return None if nonce == "n-1" else "n-2"

    v = verifier(nonce_policy=policy)
    with pytest.raises(UseDPoPNonce) as info:
        v.verify(make_proof(), method="GET", url=URL)
    assert info.value.error == "use_dpop_nonce"
    assert info.value.nonce == "n-2"
    assert info.value.headers["DPoP-Nonce"] == "n-2"
    assert info.value.status_code == 401
    with pytest.raises(UseDPoPNonce):
        v.verify(make_proof(payload=claims(nonce="stale")), method="GET", url=URL)
    v.verify(make_proof(payload=claims(nonce="n-1")), method="GET", url=URL)
    assert seen == [None, "stale", "n-1"]
    refused(make_proof(payload=claims(nonce=7)), "nonce is not a string", v=v)


def test_a_proof_refused_for_a_nonce_keeps_no_replay_slot() -> None:
    answers = iter(["fresh", None])
    v = verifier(nonce_policy=lambda _n: next(answers))
    proof = make_proof(payload=claims(nonce="fresh"))
    with pytest.raises(UseDPoPNonce):
        v.verify(proof, method="GET", url=URL)
    assert len(v.replay_cache) == 0
    v.verify(proof, method="GET", url=URL)


# --- Replay --------------------------------------------------------------------------------


def test_a_replayed_proof_is_refused_within_the_window() -> None:
    clock = FakeClock(NOW)
    v = verifier(clock=clock)
    proof = make_proof(payload=claims(iat=NOW + 5))  # the latest iat the window takes
    v.verify(proof, method="GET", url=URL)
    refused(proof, "used before", v=v)
    clock.advance(65)  # iat + max_age: the last instant the iat check still passes
    refused(proof, "used before", v=v)
    clock.advance(0.001)
    refused(proof, "iat is outside", v=v)


def test_the_same_jti_for_another_key_or_url_is_not_a_replay() -> None:
    v = verifier()
    body = claims()
    v.verify(make_proof(payload=body), method="GET", url=URL)
    v.verify(make_proof(EC_KEY_2, payload=body), method="GET", url=URL)
    other = URL + "/2"
    v.verify(make_proof(payload={**body, "htu": other}), method="GET", url=other)
    refused(make_proof(payload={**body, "htm": "GET"}), "used before", v=v)
    # The scope is the normalised htu: a differently spelled same URL is the same scope.
    spelled = {**body, "htu": "HTTPS://api.example.com:443/photos"}
    refused(make_proof(payload=spelled), "used before", v=v)


def test_a_refused_proof_takes_no_replay_slot() -> None:
    v = verifier()
    refused(make_proof(payload=claims(htm="POST")), "htm", v=v)
    refused(make_proof(EC_KEY_2, jwk=public_jwk(EC_KEY)), "signature", v=v)
    assert len(v.replay_cache) == 0


def test_a_full_replay_cache_refuses_for_a_while() -> None:
    clock = FakeClock(NOW)
    cache = ReplayCache(lifetime=65, max_entries=2, clock=clock)
    v = verifier(clock=clock, replay_cache=cache)
    v.verify(make_proof(), method="GET", url=URL)
    clock.advance(10)
    v.verify(make_proof(payload=claims(iat=NOW + 10)), method="GET", url=URL)
    with pytest.raises(ReplayCacheFull) as info:
        v.verify(make_proof(payload=claims(iat=NOW + 10)), method="GET", url=URL)
    assert info.value.status_code == 503
    assert info.value.error == "temporarily_unavailable"
    assert info.value.headers["Retry-After"] == "55"
    clock.advance(55.5)
    v.verify(make_proof(payload=claims(iat=NOW + 60)), method="GET", url=URL)


def test_a_replay_cache_shorter_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="forgets"):
        DPoPVerifier(replay_cache=ReplayCache(lifetime=30))


# --- Errors, status and the challenge ----------------------------------------------------------


def test_the_token_endpoint_sets_status_400() -> None:
    v = verifier(status_code=400, nonce_policy=lambda n: None if n else "nn")
    with pytest.raises(InvalidDPoPProof) as info:
        v.verify(make_proof(payload=claims(htm="POST")), method="GET", url=URL)
    assert info.value.status_code == 400
    with pytest.raises(InvalidDPoPProof) as info:  # raised inside the key parsing
        v.verify(make_proof(jwk={"kty": "oct", "k": "AA"}), method="GET", url=URL)
    assert info.value.status_code == 400
    with pytest.raises(UseDPoPNonce) as nonce:
        v.verify(make_proof(), method="GET", url=URL)
    assert nonce.value.status_code == 400
    assert InvalidDPoPProof("x", status_code=400).status_code == 400
    assert InvalidDPoPProof("x").status_code == 401


def test_the_challenge_names_the_error_and_the_algorithms() -> None:
    assert dpop_challenge(["ES256", "RS256"]) == 'DPoP algs="ES256 RS256"'
    error = InvalidDPoPProof('bad "proof"')
    assert (
        verifier().challenge(error, realm="photos")
        == 'DPoP realm="photos", error="invalid_dpop_proof", '
        'error_description="bad ?proof?", algs="ES256 RS256"'
    )
    assert dpop_challenge(["ES256"], InvalidToken("")) == 'DPoP error="invalid_token", algs="ES256"'
    nonce = UseDPoPNonce("abc")
    assert dpop_challenge(["ES256"], nonce).startswith('DPoP error="use_dpop_nonce"')
    for bad in ("", "a b", 'a"b', "a\r\nSet-Cookie: x"):
        with pytest.raises(ValueError, match="nonce"):
            UseDPoPNonce(bad)
    with pytest.raises(ValueError, match="realm"):
        dpop_challenge(["ES256"], realm='a"b')


def test_render_error_answers_with_the_nonce_header() -> None:
    response = render_error(UseDPoPNonce("abc", status_code=400))
    assert response.status == 400
    assert response.headers["DPoP-Nonce"] == "abc"
    assert json.loads(response.body)["error"] == "use_dpop_nonce"
    plain = render_error(InvalidDPoPProof("bad"), bearer_realm="photos")
    assert plain.status == 401
    assert json.loads(plain.body) == {"error": "invalid_dpop_proof", "error_description": "bad"}


def test_exactly_one_dpop_header() -> None:
    assert one_proof(["a.b.c"]) == "a.b.c"
    for values in ([], ["a.b.c", "a.b.c"]):
        with pytest.raises(InvalidDPoPProof, match="exactly one"):
            one_proof(values)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_age"):
        DPoPSettings(max_age=0)
    with pytest.raises(ValueError, match="max_age"):
        DPoPSettings(max_future=float("nan"))
    with pytest.raises(ValueError, match="positive"):
        DPoPSettings(max_jti_length=0)
    assert DPoPSettings().replay_lifetime == 65
