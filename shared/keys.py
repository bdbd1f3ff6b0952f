"""RSA signing keys: generation, PEM (de)serialisation and the RFC 7638 ``kid``.

A :class:`SigningKey` is loaded once and kept in memory: parsing a PEM costs milliseconds,
signing with a loaded key costs a fraction of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from shared.errors import ConfigurationError

RSA_KEY_SIZE = 2048
PUBLIC_EXPONENT = 65537


@dataclass(frozen=True)
class SigningKey:
    """A private RSA key with its ``kid`` (the RFC 7638 thumbprint of the public key)."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate_signing_key(key_size: int = RSA_KEY_SIZE) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=key_size)
    return SigningKey(kid=thumbprint(private.public_key()), private_key=private)


def load_signing_key(pem: bytes, *, sealed_by_us: bool = False) -> SigningKey:
    """Load an unencrypted PKCS#8/PKCS#1 PEM private RSA key.

    ``sealed_by_us``: the PEM comes out of the issuer's own authenticated seal (AES-GCM under
    its secret key, issuer/keys/sealing.py), so it is a key this code generated and checked;
    cryptography's RSA key validation (a primality and consistency check costing 130-450 ms
    per key, on every issuer start, key reload and rotation) is skipped for it, as cryptography
    documents for keys from a trusted source. A PEM from anywhere else is fully validated.
    """
    try:
        private = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=sealed_by_us
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError("not a valid unencrypted PEM private key") from exc
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigurationError("signing keys must be RSA keys")
    if private.key_size < RSA_KEY_SIZE:
        raise ConfigurationError(f"RSA signing keys must have at least {RSA_KEY_SIZE} bits")
    if private.public_key().public_numbers().e != PUBLIC_EXPONENT:
        # Verifiers skip keys with any other exponent (shared.jwks.parse_jwk).
        raise ConfigurationError(f"RSA signing keys must use the public exponent {PUBLIC_EXPONENT}")
    return SigningKey(kid=thumbprint(private.public_key()), private_key=private)


def _rsa_jwk(public: rsa.RSAPublicKey) -> RSAKey:
    return RSAKey.import_key(public)


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key."""
    return str(_rsa_jwk(public).thumbprint())


def public_jwk(public: rsa.RSAPublicKey) -> dict[str, str]:
    """The public JWK with only the members a verifier needs (RFC 7517 §4, RFC 7518 §6.3.1)."""
    members: dict[str, Any] = _rsa_jwk(public).as_dict(private=False)
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": thumbprint(public),
        "n": str(members["n"]),
        "e": str(members["e"]),
    }
