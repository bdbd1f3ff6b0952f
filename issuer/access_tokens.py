"""Building the token response: the access token's claims (RFC 9068), its ``jti``, its signature,
and the OpenID Connect ID token that goes with it for scope ``openid`` (``shared/id_tokens.py``).

:class:`AccessTokens` is the part of :class:`~issuer.token_service.TokenService` that every grant
ends in; the claims are signed with the other tokens of the same event-loop turn
(``issuer/batch_signer.py``).
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from typing import Any

from issuer.accounts import Client
from issuer.batch_signer import BatchSigner
from issuer.keys import KeyRing
from issuer.settings import IssuerSettings
from shared.clock import Clock
from shared.id_tokens import id_token_claims
from shared.tokens import access_token_claims


class TokenIds:
    """``jti`` values: 128 random bits each, base64url (22 characters, as
    ``secrets.token_urlsafe(16)``), cut from one ``os.urandom`` read per 256 tokens instead of
    a system call and a ``SystemRandom`` round trip per token."""

    BYTES = 16
    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(self.BYTES * self.BATCH), 0
            raw = self._pool[self._at : self._at + self.BYTES]
            self._at += self.BYTES
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class IdTokenTerms:
    """What an ID token says beyond the access token's claims (from the authorization code)."""

    auth_time: float
    nonce: str | None


class AccessTokens:
    """The token response of a granted request (a mixin of ``TokenService``, which sets these)."""

    settings: IssuerSettings
    keyring: KeyRing
    clock: Clock
    signatures: BatchSigner
    _token_ids: TokenIds

    async def _response(
        self,
        subject: str,
        client: Client,
        audience: str,
        scopes: frozenset[str],
        *,
        refresh_token: str | None,
        sid: str | None = None,
        jti: str | None = None,
        now: float | None = None,
        id_token: IdTokenTerms | None = None,
        jkt: str | None = None,
        fid: str | None = None,
    ) -> dict[str, Any]:
        """The response body. ``jti`` and ``now``: decided by the caller ahead of the response
        (the code grant records them before it signs); ``sid``: the issuer session the tokens
        descend from; ``id_token``: an OpenID Connect ID token goes with the access token;
        ``jkt``: the thumbprint of the request's DPoP proof key: the access token is bound to it
        (``cnf.jkt``, RFC 9449 §6.1) and its ``token_type`` is ``DPoP`` (§5); ``fid``: the
        refresh-token family the tokens descend from, as the claim ``fid`` (a resource service
        refuses the token once the family ends: issue 17, shared/security_events.py)."""
        ttl = self.settings.access_token_ttl
        claims = access_token_claims(
            issuer=self.settings.issuer_url,
            subject=subject,
            audience=audience,
            client_id=client.client_id,
            scopes=scopes,
            now=self.clock() if now is None else now,
            ttl=ttl,
            jti=jti or self._token_ids.next(),
            sid=sid,
        )
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        if fid is not None:
            claims["fid"] = fid
        access_token = await self.signatures.sign(claims)
        body: dict[str, Any] = {
            # Signed with the other tokens of this event-loop turn (issuer/batch_signer.py).
            "access_token": access_token,
            "token_type": "Bearer" if jkt is None else "DPoP",
            "expires_in": ttl,
            "scope": claims["scope"],
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if id_token is not None and sid is not None:
            body["id_token"] = self._id_token(subject, client, claims, access_token, sid, id_token)
        return body

    def _id_token(
        self,
        subject: str,
        client: Client,
        access_claims: dict[str, Any],
        access_token: str,
        sid: str,
        terms: IdTokenTerms,
    ) -> str:
        """OIDC Core §2: for the client, as long-lived as the access token it came with, signed
        by the key that signs now (the access token's, bar a rotation in between)."""
        claims = id_token_claims(
            issuer=self.settings.issuer_url,
            subject=subject,
            client_id=client.client_id,
            now=access_claims["iat"],
            ttl=self.settings.access_token_ttl,
            auth_time=terms.auth_time,
            sid=sid,
            access_token=access_token,
            nonce=terms.nonce,
        )
        return self.keyring.signer().sign_id_token(claims)
