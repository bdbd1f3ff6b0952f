"""RFC 9068 access tokens: building and signing on the issuer, verifying on resource services.

Signing encodes the fixed header once and signs through ``cryptography`` (RS256 only).
Verification runs :func:`shared.jws.parse_header` first (strict, cheap, before any crypto),
pins the algorithm from configuration (never from the token, RFC 8725 §3.1), then checks the
RSA signature through ``cryptography`` directly on the bytes already parsed, and finally every
claim's type and value.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared.clock import Clock, system_clock
from shared.errors import InvalidToken
from shared.jwks import VerificationKey
from shared.jws import DEFAULT_MAX_TOKEN_BYTES, CompactJWS, SplitJWS, b64url, parse_header
from shared.keys import SigningKey
from shared.scopes import format_scope

ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
ID_TOKEN_TYPE = "JWT"  # OpenID Connect ID tokens (shared/id_tokens.py)
SECURITY_EVENT_TYPE = "secevent+jwt"  # RFC 8417 §2.3 (shared/security_events.py)
# RFC 9068 §4: verifiers accept "at+jwt" or its full media type.
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# An RFC 7638 SHA-256 thumbprint in base64url: 32 bytes, 43 characters, no padding.
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")


@dataclass(frozen=True)
class AccessToken:
    """The verified claims of an access token, typed."""

    issuer: str
    subject: str
    audience: tuple[str, ...]
    expires_at: float
    issued_at: float
    jwt_id: str
    client_id: str
    scopes: frozenset[str]
    kid: str
    claims: Mapping[str, Any] = field(repr=False)
    # RFC 9449 §6.1: the RFC 7638 thumbprint of the key the token is bound to (DPoP), or None.
    cnf_jkt: str | None = None


class TokenSigner:
    """Signs RFC 9068 access tokens with one loaded key. Build one per key and reuse it.

    The protected header is the same for every token of a key, so it is encoded once; each
    token then costs one JSON encoding, one base64url pass and the RSA signature through
    ``cryptography`` (RFC 7515 §5.1). This is the issuer's hot path: going through joserfc's
    generic ``serialize_compact`` (header validation, key lookup and algorithm registry per call)
    cost a measured share of the token endpoint (see docs/benchmarks.md); joserfc stays the
    reference the tests verify these tokens with.
    """

    def __init__(self, key: SigningKey) -> None:
        self.kid = key.kid
        self._private_key = key.private_key
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
        self._header_b64 = b64url(compact_json(header).encode())
        # OpenID Connect ID tokens (shared/id_tokens.py): the same key, ``typ: JWT``, so no
        # RFC 9068 verifier takes one for an access token.
        id_header = {"alg": ALGORITHM, "typ": ID_TOKEN_TYPE, "kid": key.kid}
        self._id_header_b64 = b64url(compact_json(id_header).encode())
        # Security Event Tokens (RFC 8417, shared/security_events.py): the same key, their own
        # ``typ``, so neither verifier takes one for the other.
        set_header = {"alg": ALGORITHM, "typ": SECURITY_EVENT_TYPE, "kid": key.kid}
        self._set_header_b64 = b64url(compact_json(set_header).encode())

    def sign(self, claims: Mapping[str, Any]) -> str:
        # The hot path: written out, not shared with sign_id_token through one more call.
        signing_input = self._header_b64 + b"." + b64url(compact_json(claims).encode())
        signature = self._private_key.sign(signing_input, _PADDING, _SHA256)
        return (signing_input + b"." + b64url(signature)).decode("ascii")

    def sign_id_token(self, claims: Mapping[str, Any]) -> str:
        """An OpenID Connect ID token with these claims (header ``typ: JWT``, this ``kid``)."""
        return self._signed(self._id_header_b64, claims)

    def sign_security_event(self, claims: Mapping[str, Any]) -> str:
        """A Security Event Token with these claims (header ``typ: secevent+jwt``, this ``kid``)."""
        return self._signed(self._set_header_b64, claims)

    def _signed(self, header_b64: bytes, claims: Mapping[str, Any]) -> str:
        signing_input = header_b64 + b"." + b64url(compact_json(claims).encode())
        signature = self._private_key.sign(signing_input, _PADDING, _SHA256)
        return (signing_input + b"." + b64url(signature)).decode("ascii")


_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def _compact_json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"))`` without its per-call set-up: the C encoder
    that ``JSONEncoder.encode`` builds on every call, built once (half the time of a token's
    claims). No circular-reference check: what goes through it is flat and built here."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
    if make is None:  # no C accelerator in this Python
        return json.JSONEncoder(separators=(",", ":")).encode
    reference = json.JSONEncoder()
    encode = make(
        None, reference.default, json.encoder.encode_basestring_ascii, None, ":", ",",
        False, False, True,
    )  # fmt: skip
    return lambda value: "".join(encode(value, 0))


compact_json = _compact_json_encoder()


def access_token_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scopes: frozenset[str],
    now: float,
    ttl: int,
    jti: str | None = None,
    sid: str | None = None,
) -> dict[str, Any]:
    """RFC 9068 §2.2 claims. ``aud`` is a single string: one token, one resource. ``sid``: the
    issuer session a person signed in with (tokens from the authorization code flow and those
    refreshed from them), as in the ID token."""
    issued = int(now)
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + ttl,
        "iat": issued,
        "nbf": issued,
        "jti": jti or secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": format_scope(scopes),
    }
    if sid is not None:
        claims["sid"] = sid
    return claims


_FLOAT_MAX = sys.float_info.max


def _is_number(value: Any) -> bool:
    """NumericDate (RFC 7519 §2): a JSON number; booleans, non-finite values and integers beyond
    a float's range (``float()`` of them raises OverflowError) are not. Comparing an int with a
    float is exact in Python and never overflows; NaN fails both comparisons."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -_FLOAT_MAX <= value <= _FLOAT_MAX
    )


def _confirmation(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a DPoP-bound token (RFC 9449 §6.1), None without ``cnf``.

    A ``cnf`` that is not an object holding exactly a well-formed ``jkt`` is refused: a token
    bound by a method this verifier does not know (``x5t#S256``, ``jwk``...) would otherwise be
    taken for a plain bearer token."""
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    if not isinstance(cnf, dict) or cnf.keys() != {"jkt"}:
        raise InvalidToken("token 'cnf' claim must be an object holding only 'jkt'")
    jkt = cnf["jkt"]
    if not isinstance(jkt, str) or not _JKT.fullmatch(jkt):
        raise InvalidToken("token 'cnf.jkt' must be a SHA-256 key thumbprint")
    return jkt


class TokenVerifier:
    """Verifies access tokens for one issuer and one audience.

    ``parse`` does every check that needs no key and returns the ``kid`` to look up;
    ``verify`` checks the signature with the key found and then the claims.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithm: str = ALGORITHM,
        leeway: int = 30,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        clock: Clock = system_clock,
    ) -> None:
        if algorithm != ALGORITHM:
            raise ValueError("only RS256 is supported")
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.clock = clock

    def parse_header(self, token: str) -> SplitJWS:
        """Every check the header allows, before the payload is even decoded."""
        jwt = parse_header(token, max_bytes=self.max_token_bytes)
        header = jwt.header
        if header.get("alg") != self.algorithm:
            raise InvalidToken("token algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
            raise InvalidToken("token type is not at+jwt")
        if not isinstance(header.get("kid"), str):
            raise InvalidToken("token has no kid")
        return jwt

    def parse(self, token: str) -> CompactJWS:
        """Every check that needs no key: the header's, then a strict decode of the rest."""
        return self.parse_header(token).complete()

    def verify(self, jwt: CompactJWS, key: VerificationKey) -> AccessToken:
        try:
            key.public_key.verify(
                jwt.signature, jwt.signing_input, padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise InvalidToken("token signature is invalid") from exc
        return self.check_claims(jwt.payload, kid=key.kid)

    def check_claims(self, claims: Mapping[str, Any], *, kid: str) -> AccessToken:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise InvalidToken(f"token has no '{name}' claim")
        for name in ("iss", "sub", "jti", "client_id"):
            if not isinstance(claims[name], str) or not claims[name]:
                raise InvalidToken(f"token '{name}' claim must be a non-empty string")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise InvalidToken(f"token '{name}' claim must be a number")
        if claims["iss"] != self.issuer:
            raise InvalidToken("token issuer is not accepted")
        aud = claims["aud"]
        if isinstance(aud, str):
            audience: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            audience = tuple(aud)
        else:
            raise InvalidToken("token 'aud' claim must be a string or an array of strings")
        if self.audience not in audience:
            raise InvalidToken("token audience is not accepted")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("token 'scope' claim must be a string")
        now = self.clock()
        if now >= claims["exp"] + self.leeway:
            raise InvalidToken("token has expired")
        if "nbf" in claims and now + self.leeway < claims["nbf"]:
            raise InvalidToken("token is not yet valid")
        if now + self.leeway < claims["iat"]:
            raise InvalidToken("token was issued in the future")
        cnf_jkt = _confirmation(claims)
        return AccessToken(
            issuer=claims["iss"],
            subject=claims["sub"],
            audience=audience,
            expires_at=float(claims["exp"]),
            issued_at=float(claims["iat"]),
            jwt_id=claims["jti"],
            client_id=claims["client_id"],
            scopes=frozenset(s for s in scope.split(" ") if s),
            kid=kid,
            claims=claims,
            cnf_jkt=cnf_jkt,
        )
