"""A DPoP proof's key (RFC 9449 §4.3, RFC 7518, RFC 7638): the supported algorithms, the public
key a proof's ``jwk`` holds (public members only, the ``alg``'s key type and curve, RSA of 2048
to 4096 bits with exponent 65537, minimally encoded), the signature check with it, and the key's
SHA-256 thumbprint (the ``jkt`` a bound token carries). Framework-free."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shared.dpop_errors import InvalidDPoPProof
from shared.jws import b64url_decode, b64url_encode

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class _Alg:
    kty: str
    hash: Callable[[], hashes.HashAlgorithm]
    curve: str = ""  # EC: the JWK crv
    pss: bool = False  # RSA: PSS (RFC 7518 §3.5) instead of PKCS#1 v1.5


_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
SUPPORTED_ALGORITHMS: dict[str, _Alg] = {
    "ES256": _Alg("EC", hashes.SHA256, curve="P-256"),
    "ES384": _Alg("EC", hashes.SHA384, curve="P-384"),
    "ES512": _Alg("EC", hashes.SHA512, curve="P-521"),
    "RS256": _Alg("RSA", hashes.SHA256),
    "RS384": _Alg("RSA", hashes.SHA384),
    "RS512": _Alg("RSA", hashes.SHA512),
    "PS256": _Alg("RSA", hashes.SHA256, pss=True),
    "PS384": _Alg("RSA", hashes.SHA384, pss=True),
    "PS512": _Alg("RSA", hashes.SHA512, pss=True),
}
# RFC 7638 §3.2: the required members of each key type, the only ones the thumbprint hashes.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint (base64url) of an EC or RSA JWK: its required members,
    in lexicographic order, as JSON without whitespace. ValueError for anything else.

    (shared.keys.thumbprint takes an RSA key object only; a proof's key may be EC.)"""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("thumbprints are defined here for EC and RSA keys only")
    if not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("the key lacks a required member")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidDPoPProof(f"DPoP key lacks {name}")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise InvalidDPoPProof(f"DPoP key member {name} is malformed") from exc


def public_key_from_jwk(jwk: Any, alg: str) -> PublicKey:
    """The public key a proof's ``jwk`` holds, if it is one ``alg`` can use (see module doc)."""
    spec = SUPPORTED_ALGORITHMS[alg]
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof("DPoP proof jwk is not an object")
    if PRIVATE_MEMBERS & jwk.keys():
        raise InvalidDPoPProof("DPoP proof jwk holds a private key")
    if jwk.get("kty") != spec.kty or jwk.get("alg", alg) != alg:
        raise InvalidDPoPProof("DPoP proof jwk is not a key for its alg")
    try:
        if spec.kty == "EC":
            if jwk.get("crv") != spec.curve:
                raise InvalidDPoPProof("DPoP proof jwk is on another curve than its alg")
            curve, size = _CURVES[spec.curve]
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != size or len(y) != size:
                raise InvalidDPoPProof("DPoP proof jwk coordinates have the wrong length")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            )
            return numbers.public_key()  # ValueError: not a point on the curve
        n, e = _member(jwk, "n"), _member(jwk, "e")
        if not n or n[0] == 0 or not e or e[0] == 0:
            raise InvalidDPoPProof("DPoP proof jwk is not minimally encoded")
        modulus = int.from_bytes(n, "big")
        if not RSA_MIN_BITS <= modulus.bit_length() <= RSA_MAX_BITS:
            raise InvalidDPoPProof("DPoP proof RSA key size is not allowed")
        if int.from_bytes(e, "big") != 65537:
            raise InvalidDPoPProof("DPoP proof RSA key exponent is not 65537")
        return rsa.RSAPublicNumbers(65537, modulus).public_key()
    except ValueError as exc:
        raise InvalidDPoPProof("DPoP proof jwk is not a valid public key") from exc


def signature_valid(key: PublicKey, alg: str, signature: bytes, signing_input: bytes) -> bool:
    """Whether ``signature`` over ``signing_input`` is ``alg``'s by ``key`` (for EC, the JWS
    form: R || S at the curve's fixed length)."""
    spec = SUPPORTED_ALGORITHMS[alg]
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = _CURVES[spec.curve][1]
            if len(signature) != 2 * size:  # RFC 7518 §3.4: R || S, fixed length
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(spec.hash()))
        elif spec.pss:
            digest = spec.hash()
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signing_input, pss, digest)
        else:
            key.verify(signature, signing_input, padding.PKCS1v15(), spec.hash())
    except (InvalidSignature, ValueError):
        return False
    return True
