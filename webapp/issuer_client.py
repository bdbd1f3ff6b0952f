"""The web app as an OAuth client of the issuer: the authorization request (PKCE S256, state,
nonce), the code and refresh grants, revocation, the ID token check and RP-initiated logout.

The web app is a confidential client: it authenticates at ``/token`` and ``/revoke`` with
``client_secret_basic`` (RFC 6749 §2.3.1: id and secret form-encoded, then Basic). Every call
has the app's timeout and follows no redirect. The ID token is checked as OpenID Connect Core
§3.1.3.7 asks: signature with a key from the issuer's JWKS (the shared cache client), ``alg``
pinned to RS256, ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, the ``nonce`` this sign-in
sent, and ``at_hash`` against the access token it came with.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.clock import Clock, system_clock
from shared.dpop import access_token_hash, thumbprint
from shared.errors import InvalidToken
from shared.id_tokens import at_hash, id_token_parts, verified_payload
from shared.jwks_client import JWKSClient
from shared.jws import b64url_encode, strict_json_object
from shared.pkce import METHOD, s256_challenge
from shared.protocol import (
    AUTHORIZE_PATH,
    END_SESSION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from webapp.sessions import PendingLogin
from webapp.settings import WebappSettings

MAX_ID_TOKEN_BYTES = 16_384
MAX_RESPONSE_BYTES = 65_536
DPOP_ALG = "ES256"


class DPoPSigner:
    """The web app's DPoP key (RFC 9449): an EC P-256 key made when the app starts, held only in
    its memory (never written, never logged), and the proofs it signs. Every token the web app
    gets is bound to this key (``cnf.jkt``), so a token that leaks is no use without it; a
    restart makes a new key, as it forgets the sessions too."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        self._jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(numbers.x.to_bytes(32, "big")),
            "y": b64url_encode(numbers.y.to_bytes(32, "big")),
        }
        self.jkt = thumbprint(self._jwk)
        self._clock = clock

    def __repr__(self) -> str:
        return f"DPoPSigner(jkt={self.jkt!r})"

    def proof(
        self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None
    ) -> str:
        """A proof for one request: ``htu`` is ``url`` without query or fragment, a fresh
        ``jti``; ``ath`` when the request carries ``access_token``; ``nonce`` when given."""
        header = {"typ": "dpop+jwt", "alg": DPOP_ALG, "jwk": self._jwk}
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": url.split("#", 1)[0].split("?", 1)[0],
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input.decode('ascii')}.{b64url_encode(signature)}"


def _segment(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def dpop_nonce(response: httpx.Response) -> str | None:
    """The ``DPoP-Nonce`` a refusal asks for (RFC 9449 §8, §9), if it is a usable one."""
    nonce: str | None = response.headers.get("dpop-nonce")
    if nonce and nonce.isascii() and nonce.isprintable() and len(nonce) <= 512:
        return nonce
    return None


class IssuerUnavailable(Exception):
    """The issuer could not be reached or gave an answer that is not OAuth (a 5xx, not JSON)."""


class IssuerRefused(Exception):
    """The issuer answered with an OAuth error (``error`` is its code, e.g. ``invalid_grant``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class BadIdToken(Exception):
    """The ID token failed a check; ``reason`` says which (safe to log: no token in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str | None = field(repr=False)
    id_token: str | None = field(repr=False)
    scope: str | None


@dataclass(frozen=True)
class IdClaims:
    subject: str
    sid: str | None
    claims: Mapping[str, Any] = field(repr=False)


def new_pending_login(now: float) -> PendingLogin:
    """Fresh state, nonce and PKCE verifier (each 256 random bits)."""
    return PendingLogin(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),  # 64 characters, RFC 7636 §4.1 syntax
        created_at=now,
    )


def basic_credentials(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: each half ``application/x-www-form-urlencoded``, then Basic."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


class IssuerClient:
    def __init__(
        self,
        settings: WebappSettings,
        http: httpx.AsyncClient,
        jwks: JWKSClient,
        *,
        dpop: DPoPSigner,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._http = http
        self._jwks = jwks
        self.dpop = dpop
        self._clock = clock
        self._auth = basic_credentials(settings.client_id, settings.client_secret)

    # -- the browser's side: where it is sent ---------------------------------------------

    def authorization_url(self, pending: PendingLogin, *, audience: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": self.settings.scope,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": s256_challenge(pending.code_verifier),
            "code_challenge_method": METHOD,
            "audience": audience,
        }
        return f"{self.settings.issuer}{AUTHORIZE_PATH}?{urlencode(query)}"

    def end_session_url(self, id_token: str) -> str:
        query = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": self.settings.post_logout_redirect_uri,
            "client_id": self.settings.client_id,
        }
        return f"{self.settings.issuer}{END_SESSION_PATH}?{urlencode(query)}"

    # -- the back channel -------------------------------------------------------------------

    async def redeem(self, code: str, pending: PendingLogin) -> TokenResponse:
        response = await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.redirect_uri,
                "code_verifier": pending.code_verifier,
            }
        )
        if response.id_token is None:
            raise BadIdToken("the token response has no id_token")
        return response

    async def refresh(self, refresh_token: str, *, audience: str) -> TokenResponse:
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "audience": audience}
        )

    async def revoke(self, refresh_token: str) -> None:
        """RFC 7009 revocation of a refresh token (its family ends at the issuer)."""
        await self._post(
            REVOCATION_PATH, {"token": refresh_token, "token_type_hint": "refresh_token"}
        )

    async def preferred_username(self, access_token: str) -> str | None:
        """``preferred_username`` from ``/userinfo``, or None when the issuer gives none."""
        # The token is DPoP-bound: the DPoP scheme and a proof for the issuer's public URL.
        proof = self.dpop.proof(
            "GET", self.settings.issuer + USERINFO_PATH, access_token=access_token
        )
        try:
            response = await self._http.get(
                self.settings.issuer_url + USERINFO_PATH,
                headers={"Authorization": f"DPoP {access_token}", "DPoP": proof},
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            body = strict_json_object(response.content)
        except ValueError:
            return None
        name = body.get("preferred_username")
        return name if isinstance(name, str) and name else None

    async def _post(
        self, path: str, form: Mapping[str, str], *, proof: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if proof is not None:
            headers["DPoP"] = proof
        try:
            return await self._http.post(
                self.settings.issuer_url + path, data=dict(form), headers=headers
            )
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(type(exc).__name__) from None

    async def _token(self, form: Mapping[str, str]) -> TokenResponse:
        """A token request with a DPoP proof: its ``htu`` is the issuer's public token URL
        (``WEBAPP_ISSUER``), which the issuer checks, not the address the request goes to. A
        ``use_dpop_nonce`` refusal is answered once with the nonce it gives."""
        htu = self.settings.issuer + TOKEN_PATH
        response = await self._post(TOKEN_PATH, form, proof=self.dpop.proof("POST", htu))
        nonce = dpop_nonce(response)
        if response.status_code == 400 and nonce is not None:
            response = await self._post(
                TOKEN_PATH, form, proof=self.dpop.proof("POST", htu, nonce=nonce)
            )
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise IssuerUnavailable("token response too large")
        try:
            body = strict_json_object(response.content)
        except ValueError:
            raise IssuerUnavailable(f"status {response.status_code}, not a JSON object") from None
        if response.status_code != 200:
            error = body.get("error")
            if response.status_code < 500 and isinstance(error, str) and error.isascii():
                raise IssuerRefused(error[:64])
            raise IssuerUnavailable(f"status {response.status_code}")
        return _token_response(body)

    # -- the ID token -----------------------------------------------------------------------

    async def verify_id_token(self, id_token: str, *, nonce: str, access_token: str) -> IdClaims:
        """OIDC Core §3.1.3.7 for the token this sign-in's code brought. KeysUnavailable (the
        JWKS could not be had) propagates; any failed check is :class:`BadIdToken`."""
        try:
            split, kid = id_token_parts(id_token, max_bytes=MAX_ID_TOKEN_BYTES)
            claims = verified_payload(split, await self._jwks.get_key(kid))
        except InvalidToken as exc:
            raise BadIdToken(exc.description) from None
        return self._check_claims(claims, nonce=nonce, access_token=access_token)

    def _check_claims(
        self, claims: Mapping[str, Any], *, nonce: str, access_token: str
    ) -> IdClaims:
        client_id = self.settings.client_id
        if claims.get("iss") != self.settings.issuer:
            raise BadIdToken("id_token iss is not the issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if client_id not in audiences:
            raise BadIdToken("id_token aud does not name this client")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise BadIdToken("id_token azp is not this client")
        now = self._clock()
        leeway = self.settings.token_leeway
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise BadIdToken("id_token exp and iat must be numbers")
        if isinstance(exp, bool) or isinstance(iat, bool):
            raise BadIdToken("id_token exp and iat must be numbers")
        if now >= exp + leeway:
            raise BadIdToken("id_token has expired")
        if iat > now + leeway:
            raise BadIdToken("id_token was issued in the future")
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise BadIdToken("id_token nonce is not this sign-in's")
        hashed = claims.get("at_hash")
        if hashed is not None and (
            not isinstance(hashed, str)
            or not hmac.compare_digest(hashed.encode(), at_hash(access_token).encode())
        ):
            raise BadIdToken("id_token at_hash does not match the access token")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise BadIdToken("id_token has no sub")
        sid = claims.get("sid")
        return IdClaims(
            subject=subject, sid=sid if isinstance(sid, str) and sid else None, claims=claims
        )


def _token_response(body: Mapping[str, Any]) -> TokenResponse:
    access = body.get("access_token")
    token_type = body.get("token_type")
    expires_in = body.get("expires_in")
    refresh = body.get("refresh_token")
    id_token = body.get("id_token")
    scope = body.get("scope")
    if not isinstance(access, str) or not access or not access.isascii():
        raise IssuerUnavailable("token response has no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "dpop":
        # A proof went with the request: a token not bound to the key is not what was asked.
        raise IssuerUnavailable("token response is not a DPoP-bound token")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise IssuerUnavailable("token response has no positive expires_in")
    if refresh is not None and not isinstance(refresh, str):
        raise IssuerUnavailable("token response refresh_token is not a string")
    if id_token is not None and not isinstance(id_token, str):
        raise IssuerUnavailable("token response id_token is not a string")
    return TokenResponse(
        access_token=access,
        expires_in=expires_in,
        refresh_token=refresh or None,
        id_token=id_token or None,
        scope=scope if isinstance(scope, str) else None,
    )
