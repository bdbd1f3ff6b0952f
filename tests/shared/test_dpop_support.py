"""Keys and hand-built DPoP proofs for the DPoP tests (no JOSE library: bytes as RFC 7515 says).

Helpers only (named test_dpop_* to sit with the tests it serves); it holds no tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.jws import b64url_encode

NOW = 1_700_000_000.0
URL = "https://api.example.com/photos"

_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}

EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KEY_2 = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64int(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def public_jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        size = _SIZES[crv]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64int(numbers.x, size),
            "y": b64int(numbers.y, size),
        }
    rsa_numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": b64int(rsa_numbers.n), "e": b64int(rsa_numbers.e)}


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url_encode(raw)


def sign(key: Any, alg: str, signing_input: bytes) -> bytes:
    digest = _HASHES[alg[2:]]()
    if alg.startswith("ES"):
        der = key.sign(signing_input, ec.ECDSA(digest))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return bytes(key.sign(signing_input, pss, digest))
    return bytes(key.sign(signing_input, padding.PKCS1v15(), digest))


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "htm": "GET",
        "htu": URL,
        "iat": int(NOW),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def make_proof(
    key: Any = EC_KEY,
    alg: str = "ES256",
    *,
    header: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    jwk: Any = None,
    drop: tuple[str, ...] = (),
) -> str:
    """A proof signed by ``key``; ``header`` members override the defaults (None removes one)."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk or public_jwk(key)}
    head.update(header or {})
    head = {k: v for k, v in head.items() if v is not None and k not in drop}
    body = claims() if payload is None else payload
    signing_input = f"{segment(head)}.{segment(body)}"
    signature = sign(key, alg, signing_input.encode())
    return f"{signing_input}.{b64url_encode(signature)}"


def resign(key: Any, alg: str, header_b64: str, payload_b64: str) -> str:
    signing_input = f"{header_b64}.{payload_b64}"
    return f"{signing_input}.{b64url_encode(sign(key, alg, signing_input.encode()))}"
