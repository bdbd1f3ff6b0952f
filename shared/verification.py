"""Request authentication for resource services: bearer extraction, JWKS lookup, verification.

Framework-free: the Starlette backend in ``resource_service.auth`` is a few lines over this.
"""

from __future__ import annotations

from collections import Counter

from shared.bearer import extract_bearer
from shared.errors import KeyhouseError
from shared.jwks_client import JWKSClient
from shared.tokens import AccessToken, TokenVerifier


class BearerAuthenticator:
    def __init__(self, verifier: TokenVerifier, jwks: JWKSClient) -> None:
        self.verifier = verifier
        self.jwks = jwks
        self.results: Counter[str] = Counter()  # verifications by result, for metrics

    async def authenticate(
        self, authorization: str | None, *, other_carriers: bool = False
    ) -> AccessToken:
        try:
            token = extract_bearer(authorization, other_carriers=other_carriers)
            jwt = self.verifier.parse(token)
            key = await self.jwks.get_key(jwt.header["kid"])
            access = self.verifier.verify(jwt, key)
        except KeyhouseError as exc:
            self.results[exc.error] += 1
            raise
        self.results["valid"] += 1
        return access
