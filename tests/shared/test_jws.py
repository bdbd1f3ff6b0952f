"""Strict compact JWS parsing (RFC 7515 §7.1, RFC 8725 §3): everything refused before crypto."""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from shared.errors import InvalidToken
from shared.jws import (
    MAX_JSON_DEPTH,
    b64url,
    b64url_decode,
    b64url_encode,
    parse_header,
    strict_json,
    strict_json_object,
)


def _seg(obj: object) -> str:
    return b64url_encode(json.dumps(obj).encode())


HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": "k1"}
PAYLOAD = {"sub": "x"}
SIG = b64url_encode(b"\x01" * 256)


def _jws(header: object = HEADER, payload: object = PAYLOAD, sig: str = SIG) -> str:
    return f"{_seg(header)}.{_seg(payload)}.{sig}"


def test_well_formed_token_parses() -> None:
    jwt = parse_header(_jws()).complete()
    assert jwt.header == HEADER
    assert jwt.payload == PAYLOAD
    assert jwt.signature == b"\x01" * 256


@pytest.mark.parametrize("count", [1, 2, 4, 5])
def test_exactly_three_segments(count: int) -> None:
    token = ".".join([_seg(HEADER), _seg(PAYLOAD), SIG, SIG, SIG][:count])
    with pytest.raises(InvalidToken, match="malformed"):
        parse_header(token).complete()


def test_size_cap_is_checked_first() -> None:
    token = _jws(payload={"pad": "x" * 9000})
    with pytest.raises(InvalidToken, match="too large"):
        parse_header(token).complete()
    assert parse_header(token, max_bytes=20_000).complete().payload["pad"] == "x" * 9000


@pytest.mark.parametrize(
    "segment",
    ["eyJhIjoxfQ==", "eyJhIjoxfQ=", "eyJhIjoxfQ+", "eyJhIjoxfQ/", "eyJh IjoxfQ", "e", "eyJhIjoxfR"],
)
def test_strict_unpadded_canonical_base64url(segment: str) -> None:
    with pytest.raises(ValueError):
        b64url_decode(segment)


def test_canonical_segment_decodes() -> None:
    assert b64url_decode("eyJhIjoxfQ") == b'{"a":1}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":2}}',
        b"[1,2]",
        b'"str"',
        b"NaN",
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_json_must_be_an_object_without_duplicates_or_constants(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json_object(raw)


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
def test_key_injection_members_refused(member: str) -> None:
    with pytest.raises(InvalidToken, match="its own key"):
        parse_header(_jws(header={**HEADER, member: "https://attacker.example"})).complete()


def test_crit_refused() -> None:
    with pytest.raises(InvalidToken, match="critical"):
        parse_header(_jws(header={**HEADER, "crit": ["exp"], "exp": 1})).complete()


@pytest.mark.parametrize("kid", ["", 7, None, ["k"], {"k": 1}, "k" * 129])
def test_kid_must_be_a_short_string(kid: object) -> None:
    header = {**HEADER, "kid": kid}
    if kid is None:
        parse_header(_jws(header=header)).complete()  # absent-ish: the verifier refuses it later
        return
    with pytest.raises(InvalidToken, match="kid"):
        parse_header(_jws(header=header)).complete()


def test_non_ascii_refused() -> None:
    with pytest.raises(InvalidToken):
        parse_header(_jws() + "é").complete()


def _reference_b64url_decode(segment: str) -> bytes | None:
    """The obvious definition: the urlsafe alphabet only, and re-encoding gives the input back."""
    if any(c not in string.ascii_letters + string.digits + "-_" for c in segment):
        return None
    if len(segment) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == segment else None


def test_b64url_decode_agrees_with_the_reference_definition() -> None:
    rng = random.Random(7515)
    alphabet = string.ascii_letters + string.digits + "-_+/= .é\n"
    samples = [b64url_encode(rng.randbytes(n)) for n in range(40)]
    samples += ["".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(20_000)]
    for segment in samples:
        expected = _reference_b64url_decode(segment)
        try:
            got: bytes | None = b64url_decode(segment)
        except ValueError:
            got = None
        assert got == expected, segment


def test_b64url_encode_agrees_with_the_base64_module() -> None:
    rng = random.Random(4648)
    for n in [*range(70), *(rng.randrange(70, 1200) for _ in range(300))]:
        raw = rng.randbytes(n)
        expected = base64.urlsafe_b64encode(raw).rstrip(b"=")
        assert b64url(raw) == expected
        assert b64url_encode(raw) == expected.decode()


# -- JSON every later step can handle: valid Unicode, finite numbers, bounded depth ---------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"sub":"\\ud800"}',  # an escaped lone high surrogate
        b'{"sub":"\\uDFFF"}',  # low, upper-case hex
        b'{"sub":"a\\udc00b"}',
        b'{"sub":"\\ude00\\ud83d"}',  # a pair in the wrong order is two lone surrogates
        b'{"\\ud800":1}',  # in a member name
        b'{"aud":["photos","\\ud800"]}',  # inside an array
        b'{"a":{"b":[{"c":"\\ud800"}]}}',  # nested
        b'{"sub":"\xed\xa0\x80"}',  # a surrogate as (invalid) UTF-8 bytes
        b'{"sub":"\xff"}',  # not UTF-8 at all
        b'{"sub":"\xc3"}',  # truncated sequence
    ],
)
def test_strings_that_are_not_valid_unicode_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json(raw)
    with pytest.raises(InvalidToken, match="payload is malformed"):
        parse_header(f"{_seg(HEADER)}.{b64url_encode(raw)}.{SIG}").complete()
    with pytest.raises(InvalidToken, match="header is malformed"):
        parse_header(f"{b64url_encode(raw)}.{_seg(PAYLOAD)}.{SIG}").complete()


def test_escapes_of_valid_unicode_are_fine() -> None:
    raw = b'{"sub":"\\ud83d\\ude00 \\u00e9 \\ud7ff \\ue000 \\\\ud800","\\u00e9":"\xc3\xa9"}'
    value = strict_json_object(raw)
    assert value == {"sub": "\U0001f600 \u00e9 \ud7ff \ue000 \\ud800", "\u00e9": "\u00e9"}
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # writable back as JSON


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1.5e309", "-0.1e99999"])
def test_numbers_that_overflow_to_infinity_are_refused(literal: str) -> None:
    with pytest.raises(ValueError):
        strict_json_object(b'{"x":' + literal.encode() + b"}")


def test_large_but_finite_numbers_are_fine() -> None:
    value = strict_json_object(b'{"a":1e308,"b":-1.5e-400,"c":' + b"9" * 400 + b"}")
    assert value == {"a": 1e308, "b": -0.0, "c": int("9" * 400)}


def _nested(depth: int) -> bytes:
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"x":' + inner + "}").encode()


def test_nesting_is_bounded() -> None:
    assert strict_json_object(_nested(MAX_JSON_DEPTH))
    # Many brackets side by side are not deep: the walk tells them apart.
    assert strict_json_object(('{"x":[' + ",".join(["[]"] * 500) + "]}").encode())
    for depth in (MAX_JSON_DEPTH + 1, 100, 500):  # well below the decoder's own limit
        with pytest.raises(ValueError, match="nested too deeply"):
            strict_json_object(_nested(depth))
        with pytest.raises(InvalidToken, match="payload is malformed"):
            parse_header(
                f"{_seg(HEADER)}.{b64url_encode(_nested(depth))}.{SIG}", max_bytes=4096
            ).complete()
    deep = ('{"x":' + '{"y":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH + "}").encode()
    with pytest.raises(ValueError, match="nested too deeply"):
        strict_json_object(deep)
