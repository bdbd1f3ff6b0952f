"""Encryption of private keys at rest: AES-256-GCM under a key derived from ``ISSUER_SECRET_KEY``.

The ``kid`` is bound as associated data, so a sealed key cannot be swapped onto another row.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import ConfigurationError

_VERSION = b"kh1"
_NONCE_BYTES = 12


class KeySealer:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ConfigurationError("ISSUER_SECRET_KEY must be at least 16 characters")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyhouse signing keys v1"
        ).derive(secret.encode())
        self._aead = AESGCM(derived)

    def seal(self, plaintext: bytes, *, kid: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def unseal(self, sealed: bytes, *, kid: str) -> bytes:
        if not sealed.startswith(_VERSION):
            raise ConfigurationError(f"signing key {kid} is not sealed in a known format")
        nonce = sealed[len(_VERSION) : len(_VERSION) + _NONCE_BYTES]
        body = sealed[len(_VERSION) + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, kid.encode())
        except InvalidTag:
            raise ConfigurationError(
                f"cannot decrypt signing key {kid}: wrong ISSUER_SECRET_KEY?"
            ) from None


def find_secret(
    secret_key: str | None, secret_key_file: Path | None, default_file: Path
) -> str | None:
    """The key-encryption secret from the environment, ``ISSUER_SECRET_KEY_FILE`` or the default
    file; None when none is configured and the default file does not exist. Never creates one."""
    if secret_key:
        return secret_key
    path = secret_key_file or default_file
    if not path.exists():
        if secret_key_file is not None:
            raise ConfigurationError(f"ISSUER_SECRET_KEY_FILE {path} does not exist")
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the secret key file {path}: {exc}") from exc
    if not value:
        raise ConfigurationError(f"the secret key file {path} is empty")
    return value


def generate_secret_file(path: Path) -> tuple[str, bool]:
    """Write a new random secret to ``path`` (mode 0600, folder created) unless it exists.
    Returns the secret and whether this call wrote it (False: another process won the race).
    Only ``issuer init`` and ``issuer serve`` call this."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        existing = find_secret(None, path, path)
        if existing is None:  # pragma: no cover - it existed a moment ago
            raise ConfigurationError(f"the secret key file {path} vanished") from None
        return existing, False
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, True
