"""Request authentication for resource services: bearer extraction, JWKS lookup, verification.

Framework-free: the Starlette backend in ``resource_service.auth`` is a few lines over this.
A verified token is remembered in a :class:`~shared.token_cache.TokenCache` (when enabled), so a
repeated token costs a dict lookup instead of parsing and an RSA verification.
"""

from __future__ import annotations

from collections import Counter

from shared.bearer import extract_bearer
from shared.errors import KeyhouseError
from shared.jwks_client import JWKSClient
from shared.token_cache import TokenCache
from shared.tokens import AccessToken, TokenVerifier


class BearerAuthenticator:
    def __init__(
        self, verifier: TokenVerifier, jwks: JWKSClient, *, cache: TokenCache | None = None
    ) -> None:
        self.verifier = verifier
        self.jwks = jwks
        self.cache = cache if cache is not None else TokenCache(0)
        self.results: Counter[str] = Counter()  # verifications by result, for metrics

    async def authenticate(
        self, authorization: str | None, *, other_carriers: bool = False
    ) -> AccessToken:
        try:
            token = extract_bearer(authorization, other_carriers=other_carriers)
            cache = self.cache
            if cache.max_size:
                jwks = self.jwks
                if jwks.generation != cache.generation:
                    cache.sync(jwks.generation, jwks.kids)
                now = self.verifier.clock()
                # Past max_stale the keys no longer vouch for anything: take the slow path,
                # which fails closed with 503 like an uncached token would.
                if jwks.usable(now):
                    hit = cache.get(token, now)
                    if hit is not None:
                        self.results["valid"] += 1
                        return hit
            # The header names the key: an unknown kid is refused before the payload is decoded.
            split = self.verifier.parse_header(token)
            key = await self.jwks.get_key(split.header["kid"])
            access = self.verifier.verify(split.complete(), key)
        except KeyhouseError as exc:
            self.results[exc.error] += 1
            raise
        self.results["valid"] += 1
        cache.put(token, access)
        return access
