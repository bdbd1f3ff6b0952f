"""Security Event Tokens (RFC 8417) that push revocations to resource services: the event
vocabulary, the payloads the issuer builds, and the strict reading of a payload into a deny rule.

The wire format is described in docs/revocation.md. Each SET carries exactly one event; the event
names the access-token claim it matches (``keyhouse_claim``: ``jti``, ``sid``, ``fid``, ``sub`` or
``kid``), the value (the RFC 9493 ``opaque`` subject's ``id``; for ``sub``, the base64url SHA-256
of the user id, so the public stream publishes no user id), when the action happened
(``event_timestamp``) and the latest ``exp`` of any token it covers (``keyhouse_exp``).

Nothing here verifies a signature or keeps state: the issuer builds and signs payloads
(:func:`sign_set`), a receiver verifies the SET and hands the payload to :func:`rule_from_claims`,
which refuses anything that is not exactly what an issuer builds (:class:`InvalidSecurityEvent`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared.errors import KeyhouseError
from shared.jws import b64url_encode
from shared.keys import SigningKey
from shared.tokens import ALGORITHM, SECURITY_EVENT_TYPE, TokenSigner

# --- Vocabulary ------------------------------------------------------------------------------

SET_TYPE: Final = SECURITY_EVENT_TYPE  # RFC 8417 §2.3, the ``typ`` header
SET_ALGORITHM: Final = ALGORITHM
EVENTS_PATH: Final = "/events"  # the stream, on the issuer; also the SET audience's path

KEY_REVOKED: Final = "urn:keyhouse:secevent:key-revoked"
TOKEN_REVOKED: Final = "https://schemas.openid.net/secevent/oauth/event-type/token-revoked"
SESSION_REVOKED: Final = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
ACCOUNT_DISABLED: Final = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
CREDENTIAL_CHANGE: Final = "https://schemas.openid.net/secevent/caep/event-type/credential-change"

# Members of the event object (the same for every type).
SUBJECT: Final = "subject"
EVENT_TIMESTAMP: Final = "event_timestamp"
REASON_ADMIN: Final = "reason_admin"
KEYHOUSE_CLAIM: Final = "keyhouse_claim"
KEYHOUSE_EXP: Final = "keyhouse_exp"
SUBJECT_FORMAT: Final = "opaque"  # RFC 9493 §3.2.4

# Access-token claims a rule matches; ``kid`` is the token's header kid.
Claim = Literal["jti", "sid", "fid", "sub", "kid"]
CLAIMS_BY_TYPE: Final[Mapping[str, frozenset[str]]] = {
    KEY_REVOKED: frozenset({"kid"}),
    TOKEN_REVOKED: frozenset({"jti"}),
    SESSION_REVOKED: frozenset({"sid", "fid"}),
    ACCOUNT_DISABLED: frozenset({"sub"}),
    CREDENTIAL_CHANGE: frozenset({"sub"}),
}
# Claims whose rule covers only tokens issued at or before the event (a user enabled again, a
# new session with the same id cannot be: ids are random; a new password).
TIMED_CLAIMS: Final = frozenset({"sid", "fid", "sub"})

# Bounds: generous next to what the issuer builds, small enough that a hostile payload costs
# little.
MAX_ID_LENGTH: Final = 256
MAX_ISSUER_LENGTH: Final = 2048
MAX_REASON_LENGTH: Final = 200
MAX_REASONS: Final = 8
MAX_INT: Final = 2**53 - 1  # an exact JSON number everywhere
_SET_JTI = re.compile(r"[A-Za-z0-9_-]{22,128}")
_ID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no space
_SUB_HASH = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of 32 bytes


class InvalidSecurityEvent(KeyhouseError):
    """A SET payload that is not a well-formed Keyhouse security event (RFC 8935 §2.4 names a
    malformed SET ``invalid_request``)."""

    error = "invalid_request"
    status_code = 400


@dataclass(frozen=True)
class DenyRule:
    """What a receiver refuses because of one event: tokens whose ``claim`` equals ``value``
    (for ``sub``, whose hashed ``sub`` does), issued at or before ``before`` when it is set,
    until ``expires`` (the latest ``exp`` such a token can have)."""

    claim: Claim
    value: str
    before: int | None
    expires: int


def subject_hash(sub: str) -> str:
    """The published form of a user id: unpadded base64url of its SHA-256 (UTF-8)."""
    return b64url_encode(hashlib.sha256(sub.encode("utf-8")).digest())


def audience(issuer: str) -> str:
    """The ``aud`` of every SET of ``issuer``: its stream's URL."""
    return issuer + EVENTS_PATH


# --- Building (issuer) -------------------------------------------------------------------------


def _payload(
    event_type: str,
    *,
    issuer: str,
    now: int,
    subject_id: str,
    claim: Claim,
    exp: int,
    reason: str,
    jti: str | None,
) -> dict[str, Any]:
    event = {
        SUBJECT: {"format": SUBJECT_FORMAT, "id": subject_id},
        EVENT_TIMESTAMP: int(now),
        REASON_ADMIN: {"en": reason},
        KEYHOUSE_CLAIM: claim,
        KEYHOUSE_EXP: int(exp),
    }
    return {
        "iss": issuer,
        "jti": jti or secrets.token_urlsafe(16),
        "iat": int(now),
        "aud": audience(issuer),
        "events": {event_type: event},
    }


def key_revoked(
    *,
    issuer: str,
    now: int,
    kid: str,
    exp: int,
    reason: str = "signing key revoked",
    jti: str | None = None,
) -> dict[str, Any]:
    """A signing key was revoked: every token signed by ``kid``; ``exp`` = now + access TTL."""
    return _payload(
        KEY_REVOKED,
        issuer=issuer,
        now=now,
        subject_id=kid,
        claim="kid",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def token_revoked(
    *,
    issuer: str,
    now: int,
    token_jti: str,
    exp: int,
    reason: str = "access token revoked",
    jti: str | None = None,
) -> dict[str, Any]:
    """One access token was revoked: ``exp`` is that token's own ``exp``."""
    return _payload(
        TOKEN_REVOKED,
        issuer=issuer,
        now=now,
        subject_id=token_jti,
        claim="jti",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def family_ended(
    *,
    issuer: str,
    now: int,
    family_id: str,
    exp: int,
    reason: str = "refresh family ended",
    jti: str | None = None,
) -> dict[str, Any]:
    """A refresh family ended (reuse, revocation, code replay): tokens with ``fid`` = it."""
    return _payload(
        SESSION_REVOKED,
        issuer=issuer,
        now=now,
        subject_id=family_id,
        claim="fid",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def session_ended(
    *,
    issuer: str,
    now: int,
    sid: str,
    exp: int,
    reason: str = "session ended",
    jti: str | None = None,
) -> dict[str, Any]:
    """A sign-in session ended (logout): tokens with ``sid`` = it."""
    return _payload(
        SESSION_REVOKED,
        issuer=issuer,
        now=now,
        subject_id=sid,
        claim="sid",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def user_disabled(
    *,
    issuer: str,
    now: int,
    sub: str,
    exp: int,
    reason: str = "account disabled",
    jti: str | None = None,
) -> dict[str, Any]:
    """A user was disabled: tokens whose ``sub`` is the user's (hashed on the wire)."""
    return _payload(
        ACCOUNT_DISABLED,
        issuer=issuer,
        now=now,
        subject_id=subject_hash(sub),
        claim="sub",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def password_changed(
    *,
    issuer: str,
    now: int,
    sub: str,
    exp: int,
    reason: str = "password changed",
    jti: str | None = None,
) -> dict[str, Any]:
    """A user's password was changed: tokens issued to that user before the change."""
    return _payload(
        CREDENTIAL_CHANGE,
        issuer=issuer,
        now=now,
        subject_id=subject_hash(sub),
        claim="sub",
        exp=exp,
        reason=reason,
        jti=jti,
    )


def sign_set(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The compact SET: header ``{"alg": "RS256", "typ": "secevent+jwt", "kid": key.kid}``
    (the issuer signs with its key ring's :class:`TokenSigner` directly; this is for one key)."""
    return TokenSigner(key).sign_security_event(claims)


# --- Reading (receiver) ------------------------------------------------------------------------


def rule_from_claims(claims: Mapping[str, Any]) -> DenyRule:
    """The deny rule of a (signature-verified) SET payload, or :class:`InvalidSecurityEvent`.

    Checked: ``iss`` an http(s) URL, ``aud`` its stream URL, ``iat`` and every timestamp a
    non-negative integer (not a boolean), ``jti`` 22-128 base64url characters, exactly one
    event of a known type whose subject is ``opaque`` with a printable id (a SHA-256 hash for
    ``sub``), a ``keyhouse_claim`` the type allows, and bounded sizes throughout. Matching the
    configured issuer, the key and the time is the receiver's part.
    """
    if not isinstance(claims, Mapping):
        raise InvalidSecurityEvent("security event payload is not an object")
    issuer = claims.get("iss")
    if (
        not isinstance(issuer, str)
        or not 0 < len(issuer) <= MAX_ISSUER_LENGTH
        or not issuer.startswith(("https://", "http://"))
    ):
        raise InvalidSecurityEvent("security event iss is missing or malformed")
    if claims.get("aud") != audience(issuer):
        raise InvalidSecurityEvent("security event aud is not the issuer's events endpoint")
    _timestamp(claims, "iat", "security event iat")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _SET_JTI.fullmatch(jti):
        raise InvalidSecurityEvent("security event jti is missing or malformed")
    events = claims.get("events")
    if not isinstance(events, Mapping) or len(events) != 1:
        raise InvalidSecurityEvent("a security event carries exactly one event")
    ((event_type, event),) = events.items()
    allowed = CLAIMS_BY_TYPE.get(event_type)
    if allowed is None:
        raise InvalidSecurityEvent("security event type is not known")
    if not isinstance(event, Mapping):
        raise InvalidSecurityEvent("security event is not an object")
    return _rule(event, allowed)


def _rule(event: Mapping[str, Any], allowed: frozenset[str]) -> DenyRule:
    claim = event.get(KEYHOUSE_CLAIM)
    if not isinstance(claim, str) or claim not in allowed:
        raise InvalidSecurityEvent("security event keyhouse_claim does not fit its type")
    subject = event.get(SUBJECT)
    if (
        not isinstance(subject, Mapping)
        or set(subject) != {"format", "id"}
        or subject["format"] != SUBJECT_FORMAT
    ):
        raise InvalidSecurityEvent("security event subject is not an opaque identifier")
    value = subject["id"]
    pattern = _SUB_HASH if claim == "sub" else _ID
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidSecurityEvent("security event subject id is malformed")
    timestamp = _timestamp(event, EVENT_TIMESTAMP, "security event event_timestamp")
    expires = _timestamp(event, KEYHOUSE_EXP, "security event keyhouse_exp")
    reasons = event.get(REASON_ADMIN)
    if not isinstance(reasons, Mapping) or not 0 < len(reasons) <= MAX_REASONS:
        raise InvalidSecurityEvent("security event reason_admin is malformed")
    for language, text in reasons.items():
        if not isinstance(text, str) or len(language) > 35 or len(text) > MAX_REASON_LENGTH:
            raise InvalidSecurityEvent("security event reason_admin is malformed")
    before = timestamp if claim in TIMED_CLAIMS else None
    return DenyRule(claim=cast(Claim, claim), value=value, before=before, expires=expires)


def _timestamp(source: Mapping[str, Any], name: str, label: str) -> int:
    value = source.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise InvalidSecurityEvent(f"{label} is not a non-negative integer")
    return value


_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
