"""JSON Web Key Sets (RFC 7517 §5): the issuer's public document and the verifier's parsed view.

The issuer side builds the document from an allow-list of public members, so a private member
can never leak even if a key object carries one. The verifier side validates every key on load
and skips (and reports) the bad ones so the rest of the set keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from shared.errors import JWKSError
from shared.keys import PUBLIC_EXPONENT

PUBLIC_MEMBERS = ("kty", "use", "alg", "kid", "n", "e")
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192


def build_jwks(jwks: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Public JWKS document from public JWKs: only allow-listed members survive."""
    return {"keys": [{m: jwk[m] for m in PUBLIC_MEMBERS if m in jwk} for jwk in jwks]}


def jwks_etag(body: bytes) -> str:
    """A strong ETag (RFC 9110 §8.8.3) derived from the exact bytes served."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def encode_jwks(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False)


@dataclass(frozen=True)
class ParsedJWKS:
    """Usable keys by ``kid`` plus a human-readable reason for every key that was skipped."""

    keys: dict[str, VerificationKey]
    skipped: tuple[str, ...] = ()


def _b64url_uint(value: Any, member: str) -> int:
    """An RFC 7518 §6.3.1.1 Base64urlUInt: unpadded canonical base64url of the minimal
    big-endian octets (no leading zero octet; zero itself is the single octet 0)."""
    if not isinstance(value, str) or not value or "=" in value:
        raise ValueError(f"'{member}' must be an unpadded base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"'{member}' is not base64url") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != value:
        raise ValueError(f"'{member}' is not canonical base64url")
    if len(raw) > 1 and raw[0] == 0:
        raise ValueError(f"'{member}' is not the minimal encoding (leading zero octet)")
    return int.from_bytes(raw, "big")


def parse_jwk(jwk: Any, *, max_kid_length: int = 128) -> VerificationKey:
    """Validate one JWK for RS256 verification; raises ValueError with the reason.

    Refused: private members, a modulus outside [2048, 8192] bits, a public exponent other than
    65537, and ``n``/``e`` that are not the minimal unpadded base64url encoding (RFC 7518
    §6.3.1.1: no leading zero octet).
    """
    if not isinstance(jwk, dict):
        raise ValueError("key is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > max_kid_length:
        raise ValueError("key has no usable 'kid'")
    if jwk.get("kty") != "RSA":
        raise ValueError(f"key {kid!r}: kty must be RSA")
    if PRIVATE_MEMBERS & jwk.keys():
        raise ValueError(f"key {kid!r}: contains private members")
    if "use" in jwk and jwk["use"] != "sig":
        raise ValueError(f"key {kid!r}: use must be sig")
    if "alg" in jwk and jwk["alg"] != "RS256":
        raise ValueError(f"key {kid!r}: alg must be RS256")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or ops != ["verify"]:
            raise ValueError(f'key {kid!r}: key_ops must be ["verify"]')
    try:
        n = _b64url_uint(jwk.get("n"), "n")
        e = _b64url_uint(jwk.get("e"), "e")
    except ValueError as exc:
        raise ValueError(f"key {kid!r}: {exc}") from None
    bits = n.bit_length()
    if bits < MIN_RSA_BITS or bits > MAX_RSA_BITS:
        raise ValueError(f"key {kid!r}: modulus of {bits} bits is outside [2048, 8192]")
    if e != PUBLIC_EXPONENT:  # e = 3 and other exotic exponents: weak or never issued
        raise ValueError(f"key {kid!r}: public exponent must be {PUBLIC_EXPONENT}")
    try:
        public = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise ValueError(f"key {kid!r}: not a valid RSA public key") from exc
    return VerificationKey(kid=kid, public_key=public)


def parse_jwks(document: Any, *, max_keys: int = 32) -> ParsedJWKS:
    """Parse a JWKS document for verification.

    The document itself must be an object with a ``keys`` array of at most ``max_keys`` entries,
    or :class:`JWKSError` is raised. Individual bad keys are skipped. A ``kid`` that appears more
    than once is ambiguous, so every key carrying it is dropped (deterministic, and an attacker
    who can add a key cannot shadow a good one).
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSError("JWKS document must be an object with a 'keys' array")
    entries = document["keys"]
    if len(entries) > max_keys:
        raise JWKSError(f"JWKS document has {len(entries)} keys, more than the cap of {max_keys}")
    keys: dict[str, VerificationKey] = {}
    duplicates: set[str] = set()
    skipped: list[str] = []
    for entry in entries:
        try:
            key = parse_jwk(entry)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if key.kid in keys or key.kid in duplicates:
            duplicates.add(key.kid)
            keys.pop(key.kid, None)
            continue
        keys[key.kid] = key
    for kid in sorted(duplicates):
        skipped.append(f"key {kid!r}: kid appears more than once; all copies ignored")
    return ParsedJWKS(keys=keys, skipped=tuple(skipped))
