"""Building the token response: the access token's claims (RFC 9068), its ``jti``, its signature.

:class:`AccessTokens` is the part of :class:`~issuer.token_service.TokenService` that every grant
ends in; the claims are signed with the other tokens of the same event-loop turn
(``issuer/batch_signer.py``).
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any

from issuer.accounts import Client
from issuer.batch_signer import BatchSigner
from issuer.settings import IssuerSettings
from shared.clock import Clock
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


class AccessTokens:
    """The token response of a granted request (a mixin of ``TokenService``, which sets these)."""

    settings: IssuerSettings
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
    ) -> dict[str, Any]:
        ttl = self.settings.access_token_ttl
        claims = access_token_claims(
            issuer=self.settings.issuer_url,
            subject=subject,
            audience=audience,
            client_id=client.client_id,
            scopes=scopes,
            now=self.clock(),
            ttl=ttl,
            jti=self._token_ids.next(),
        )
        body: dict[str, Any] = {
            # Signed with the other tokens of this event-loop turn (issuer/batch_signer.py).
            "access_token": await self.signatures.sign(claims),
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": claims["scope"],
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body
