"""Strict parsing of compact JWS (RFC 7515 §7.1) before any cryptography runs.

RFC 8725 §3 asks verifiers to be strict about what they accept. Every check here is cheap and
runs before the signature check, so malformed or hostile input is refused without touching RSA:
a size cap, exactly three segments, canonical unpadded base64url, JSON objects without duplicate
members, no ``crit``, and none of the header members that would let a token choose its own key.

The JSON itself must be something every later step can handle: valid Unicode (UTF-8 without
surrogates, and no escaped lone surrogate such as ``"\\ud800"``, which Python's decoder would
turn into a string no encoder accepts), finite numbers only, and at most ``MAX_JSON_DEPTH``
levels of nesting. A value that passes can be re-serialised as JSON (``/whoami`` does).
"""

from __future__ import annotations

import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidToken

DEFAULT_MAX_TOKEN_BYTES = 8192
# Objects and arrays nested deeper than this are refused: an access token, a JWKS or a metadata
# document needs a handful of levels, and a deep value would blow Python's recursion limit when
# something later (a JSON response, a log) walks it.
MAX_JSON_DEPTH = 32
MAX_KID_LENGTH = 128
# RFC 7515 §4.1: members that point the verifier at a key chosen by the token. Never honoured,
# and a token carrying one is refused outright (header key injection).
KEY_INJECTION_MEMBERS = frozenset({"jku", "x5u", "jwk", "x5c"})


@dataclass(frozen=True)
class CompactJWS:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


# For a final group of 2 (or 3) characters, the bits past the last whole byte must be zero:
# only these characters can end a canonical encoding (RFC 4648 §3.5, one token one spelling).
_CANONICAL_LAST = {
    2: frozenset("AQgw"),
    3: frozenset("AEIMQUYcgkosw048"),
}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64url_decode(segment: str) -> bytes:
    """Decode canonical, unpadded base64url (RFC 7515 §2); ValueError otherwise."""
    rest = len(segment) % 4
    if rest == 1 or "+" in segment or "/" in segment or "=" in segment:
        raise ValueError("not unpadded base64url")
    if rest and segment[-1] not in _CANONICAL_LAST[rest]:
        raise ValueError("non-canonical base64url")
    try:
        standard = segment.encode("ascii").translate(_TO_STANDARD) + b"=" * (-rest % 4)
        return binascii.a2b_base64(standard, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64url") from exc


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(raw: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2) as bytes, straight through ``binascii``."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def b64url_encode(raw: bytes) -> str:
    return b64url(raw).decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    # Called only for literals with a fraction or an exponent (never for an honest token's
    # claims). "1e400" would otherwise become inf, which no JSON encoder will write back.
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
)


# Writes a decoded value back out as text, in C: a lone surrogate survives into that text and
# fails the UTF-8 encode. Faster than walking the value in Python for the strings alone.
_UNICODE_CHECK = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


def _check_depth(value: Any) -> None:
    """Walk a decoded value without recursion and refuse it past ``MAX_JSON_DEPTH`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError("JSON is nested too deeply")
            members = item.values() if isinstance(item, dict) else item
            stack.extend((member, depth + 1) for member in members)


def strict_json(raw: bytes) -> Any:
    """Parse strict UTF-8 JSON (RFC 8259): no duplicate members, no NaN/Infinity, no number that
    overflows to infinity, no lone surrogate (raw or escaped), at most ``MAX_JSON_DEPTH`` levels.

    Every refusal is a ValueError. Past the decoder, the common case costs one substring search
    and two counts over the text (three C calls, a fraction of the decode itself). The depth is
    walked only when the text holds more brackets than the bound; the strings are checked only
    when the text holds a ``\\uD...`` escape, the only way a surrogate survives the strict UTF-8
    decode (a valid pair decodes to one code point and passes).
    """
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(str(exc)) from exc
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_depth(value)
    if "\\u" in text and ("\\ud" in text or "\\uD" in text):
        try:
            _UNICODE_CHECK.encode(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("string is not valid Unicode (lone surrogate)") from exc
    return value


def strict_json_object(raw: bytes) -> dict[str, Any]:
    """:func:`strict_json` that must be an object."""
    value = strict_json(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class SplitJWS:
    """A compact JWS whose header is checked and decoded; payload and signature not yet.

    The header alone names the key. A verifier looks the ``kid`` up first and decodes the rest
    (:meth:`complete`) only for a key it holds, so a flood of tokens with unknown kids costs one
    small decode each.
    """

    header: dict[str, Any]
    header_b64: str
    payload_b64: str
    signature_b64: str

    def complete(self) -> CompactJWS:
        try:
            payload = strict_json_object(b64url_decode(self.payload_b64))
        except ValueError as exc:
            raise InvalidToken("token payload is malformed") from exc
        try:
            signature = b64url_decode(self.signature_b64)
        except ValueError as exc:
            raise InvalidToken("token signature is malformed") from exc
        return CompactJWS(
            header=self.header,
            payload=payload,
            signing_input=f"{self.header_b64}.{self.payload_b64}".encode("ascii"),
            signature=signature,
        )


def parse_header(token: str, *, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> SplitJWS:
    """Split a compact JWS and strictly decode and check its header only."""
    if len(token) > max_bytes:
        raise InvalidToken("token is too large")
    if not token.isascii():
        raise InvalidToken("token is malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("token is malformed")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = strict_json_object(b64url_decode(header_b64))
    except ValueError as exc:
        raise InvalidToken("token header is malformed") from exc
    if "crit" in header:
        raise InvalidToken("token uses critical header parameters")
    if KEY_INJECTION_MEMBERS & header.keys():
        raise InvalidToken("token header names its own key")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH):
        raise InvalidToken("token kid is malformed")
    return SplitJWS(header, header_b64, payload_b64, signature_b64)
