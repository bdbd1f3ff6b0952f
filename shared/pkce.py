"""Proof Key for Code Exchange (RFC 7636), ``S256`` only.

The client makes a secret ``code_verifier``, sends its SHA-256 (``code_challenge``, base64url
without padding) with the authorization request and the verifier itself with the code; whoever
stole the code in between lacks the verifier. ``plain`` (the challenge *is* the verifier) is not
supported: OAuth 2.1 and RFC 9700 §2.1.1 ask for ``S256`` whenever the client can compute it,
and every client Keyhouse serves can.

Pure functions: no web framework, no storage. The comparison is constant-time
(:func:`hmac.compare_digest`), so the time an answer takes says nothing about how much of a
guessed verifier was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from shared.jws import b64url_encode

METHOD = "S256"
METHODS = (METHOD,)

# RFC 7636 §4.1: code-verifier = 43*128unreserved (ALPHA / DIGIT / "-" / "." / "_" / "~")
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# The S256 challenge: base64url (no padding) of 32 bytes is 43 characters, the last one of these
# (its two low bits are padding and must be zero, RFC 4648 §3.5: one value, one spelling).
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{42}[AEIMQUYcgkosw048]")


def is_valid_verifier(verifier: str) -> bool:
    """``verifier`` has RFC 7636 §4.1's syntax: 43 to 128 unreserved characters."""
    return _VERIFIER.fullmatch(verifier) is not None


def is_valid_challenge(challenge: str) -> bool:
    """``challenge`` can be an ``S256`` challenge: the base64url SHA-256 of something."""
    return _CHALLENGE.fullmatch(challenge) is not None


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: ``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))``."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: the verifier (well-formed) hashes to the challenge, compared in constant
    time. A malformed verifier never matches."""
    if not is_valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256_challenge(verifier).encode(), challenge.encode("utf-8"))
