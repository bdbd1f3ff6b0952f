"""OpenID Connect ID tokens (OpenID Connect Core 1.0 §2, §3.1.3.6): the claims the issuer signs,
``at_hash``, and the check of an ``id_token_hint`` at logout (RP-Initiated Logout 1.0 §2).

An ID token tells the client who signed in, when and in which session; it is not an access token
and no resource service accepts one: its header says ``typ: JWT`` (RFC 9068 §2.1 verifiers refuse
anything but ``at+jwt``) and its ``aud`` is the client, not a resource. It is signed with the
key that signs access tokens (same key ring, same ``kid``, RS256), so clients verify it with the
issuer's JWKS.

Pure: no web framework, no storage; the clock and the key look-up are the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared.errors import InvalidToken
from shared.jwks import VerificationKey
from shared.jws import DEFAULT_MAX_TOKEN_BYTES, SplitJWS, b64url_encode, parse_header

ALGORITHM = "RS256"
ID_TOKEN_TYPE = "JWT"
# What the issuer can tell about a user (discovery's claims_supported).
CLAIMS_SUPPORTED = (
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "at_hash",
    "preferred_username",
)


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left-most half of the hash of the ASCII access
    token, with the hash of the ID token's ``alg`` (SHA-256 for RS256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


def id_token_claims(
    *,
    issuer: str,
    subject: str,
    client_id: str,
    now: float,
    ttl: int,
    auth_time: float,
    sid: str,
    access_token: str,
    nonce: str | None = None,
) -> dict[str, Any]:
    """OIDC Core §2 claims for one client (``aud`` is the client alone, ``azp`` the same)."""
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "azp": client_id,
        "exp": issued + ttl,
        "iat": issued,
        "auth_time": int(auth_time),
        "sid": sid,
        "at_hash": at_hash(access_token),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


@dataclass(frozen=True)
class IdTokenHint:
    """What a verified ``id_token_hint`` names: the client it was issued to, the user, the
    session (``sid``, when the token carries one)."""

    client_id: str
    subject: str
    sid: str | None


def check_id_token_hint(
    token: str, *, issuer: str, key_for: Callable[[str], VerificationKey | None]
) -> IdTokenHint:
    """An ID token this issuer signed, whatever its age (RP-Initiated Logout 1.0 §2: the hint
    may have expired; it names a session, it grants nothing).

    Checked: the compact JWS's shape (:func:`shared.jws.parse_header`), ``alg`` RS256 (never
    taken from the token as a choice), ``typ`` JWT when present (an access token is no hint),
    a ``kid`` that ``key_for`` knows, the signature, ``iss``, a single client in ``aud`` (or
    ``azp``), a ``sub``. Anything else raises :class:`InvalidToken`.
    """
    split, kid = id_token_parts(token, what="id_token_hint")
    key = key_for(kid)
    if key is None:
        raise InvalidToken("id_token_hint was not signed by a key of this issuer")
    return _hint_claims(verified_payload(split, key, what="id_token_hint"), issuer)


def id_token_parts(
    token: str, *, what: str = "id_token", max_bytes: int = DEFAULT_MAX_TOKEN_BYTES
) -> tuple[SplitJWS, str]:
    """An ID token's checks before any cryptography, for the issuer (a logout hint) and a
    relying party (the web app) alike: the compact JWS's shape (:func:`shared.jws.parse_header`),
    ``alg`` RS256 (never taken from the token as a choice), ``typ`` JWT when present (an access
    token is no ID token), a ``kid``. Returns the split token and its ``kid``; anything else
    raises :class:`InvalidToken` naming ``what``."""
    split = parse_header(token, max_bytes=max_bytes)
    header = split.header
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"{what} algorithm is not accepted")
    typ = header.get("typ", ID_TOKEN_TYPE)
    if not isinstance(typ, str) or typ.upper() != ID_TOKEN_TYPE:
        raise InvalidToken(f"{what} is not an ID token (typ is not JWT)")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken(f"{what} has no kid")
    return split, kid


def verified_payload(
    split: SplitJWS, key: VerificationKey, *, what: str = "id_token"
) -> Mapping[str, Any]:
    """The claims of ``split`` once its RS256 signature checks out with ``key``."""
    jws = split.complete()
    try:
        key.public_key.verify(jws.signature, jws.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise InvalidToken(f"{what} signature is invalid") from exc
    return jws.payload


def _hint_claims(claims: Mapping[str, Any], issuer: str) -> IdTokenHint:
    if claims.get("iss") != issuer:
        raise InvalidToken("id_token_hint was issued by another issuer")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("id_token_hint has no subject")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    azp = claims.get("azp")
    if isinstance(azp, str) and azp in audiences:
        client_id = azp
    elif len(audiences) == 1 and isinstance(audiences[0], str) and audiences[0]:
        client_id = audiences[0]
    else:
        raise InvalidToken("id_token_hint names no single client")
    sid = claims.get("sid")
    return IdTokenHint(
        client_id=client_id, subject=subject, sid=sid if isinstance(sid, str) and sid else None
    )
