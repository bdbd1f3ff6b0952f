"""User passwords: argon2id (RFC 9106) through argon2-cffi, with a dummy hash for unknown users."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 "low memory" profile
# Verifying against this costs what verifying a real hash costs, so an unknown username
# takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("keyhouse-dummy-password-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check: always runs one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
