"""Request authentication for resource services: Bearer and DPoP extraction, JWKS lookup,
verification, the DPoP proof, and the ``WWW-Authenticate`` challenges of a refusal.

Framework-free: the Starlette backend in ``resource_service.auth`` is a few lines over this.
A verified token is remembered in a :class:`~shared.token_cache.TokenCache` (when enabled), so a
repeated token costs a dict lookup instead of parsing and an RSA verification.

**DPoP** (RFC 9449 §7), when a :class:`~shared.dpop.DPoPVerifier` is given:

* ``Authorization: DPoP <token>`` needs exactly one ``DPoP`` header (checked before the token);
  the token must carry ``cnf.jkt``, and the proof is checked for this request's method and URL
  with ``ath`` = the token's hash and the key = ``cnf.jkt`` (its ``jti`` once, per process).
* A token with ``cnf.jkt`` sent as ``Bearer`` is refused (``invalid_token``): stolen, it would
  otherwise work without the key.
* ``require_dpop``: a ``Bearer`` token is refused whatever it holds.
* A ``Bearer`` token without ``cnf`` costs what it always did: one attribute test more, no DPoP
  work (no proof read, no URL built: the request context is a callable called only for DPoP).

**Pushed revocation**: every verified token, cache hits included, is looked up in the
:class:`~shared.deny_list.DenyList` the issuer's events fill (``shared/revocation_events.py``);
a token an entry covers is refused, 401 ``invalid_token`` "the token has been revoked". An empty
deny-list costs one attribute test (:attr:`DenyList.active`) per request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.bearer import BEARER, DPOP, extract_credentials
from shared.deny_list import DenyList
from shared.dpop import DPoPVerifier, InvalidDPoPProof, dpop_challenge, one_proof
from shared.errors import InsufficientScope, InvalidToken, KeyhouseError, MissingToken
from shared.jwks_client import JWKSClient
from shared.token_cache import TokenCache
from shared.tokens import AccessToken, TokenVerifier

REVOKED = "the token has been revoked"  # a token a pushed revocation event covers


@dataclass(frozen=True)
class ProofContext:
    """What a DPoP proof is checked against: every ``DPoP`` header value of the request, its
    method, and the URL it was addressed to (no query; see :mod:`shared.dpop`)."""

    proofs: Sequence[str]
    method: str
    url: str


class BearerAuthenticator:
    """Bearer tokens, and DPoP-bound ones when ``dpop`` is given (see the module doc)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        jwks: JWKSClient,
        *,
        cache: TokenCache | None = None,
        dpop: DPoPVerifier | None = None,
        require_dpop: bool = False,
        deny: DenyList | None = None,
    ) -> None:
        if require_dpop and dpop is None:
            raise ValueError("require_dpop needs a DPoP verifier")
        self.verifier = verifier
        self.jwks = jwks
        self.cache = cache if cache is not None else TokenCache(0)
        self.dpop = dpop
        self.require_dpop = require_dpop
        self.deny = deny if deny is not None else DenyList(max_entries=1)
        self.results: Counter[str] = Counter()  # verifications by result, for metrics

    @property
    def accepts_bearer(self) -> bool:
        return not self.require_dpop

    async def authenticate(
        self,
        authorization: str | None,
        *,
        other_carriers: bool = False,
        request: Callable[[], ProofContext] | None = None,
    ) -> AccessToken:
        """The verified token of a request, or the error to answer. ``request`` gives the DPoP
        proof context; it is called only when the scheme is DPoP (without it, DPoP is refused).
        """
        try:
            dpop = self.dpop
            scheme, token = extract_credentials(
                authorization, other_carriers=other_carriers, dpop=dpop is not None
            )
            if scheme == BEARER:
                if self.require_dpop:
                    raise InvalidToken("this service accepts DPoP-bound tokens only")
                # The hot path: a cached token is a lookup, not one more coroutine.
                access = self._cached(token) or await self._verified(token)
                if self.deny.active:
                    self._check_revoked(access)
                if access.cnf_jkt is not None:
                    raise InvalidToken("the token is DPoP-bound: send it with the DPoP scheme")
            else:
                assert dpop is not None  # extract_credentials answers DPoP only when it is accepted
                if request is None:
                    raise InvalidDPoPProof("DPoP is not available on this request")
                context = request()
                proof = one_proof(context.proofs)  # cheap refusals before the token's RSA
                access = self._cached(token) or await self._verified(token)
                if self.deny.active:
                    self._check_revoked(access)
                if access.cnf_jkt is None:
                    raise InvalidToken("the token is not DPoP-bound: send it as a Bearer token")
                dpop.verify(
                    proof,
                    method=context.method,
                    url=context.url,
                    access_token=token,
                    expected_jkt=access.cnf_jkt,
                )
        except KeyhouseError as exc:
            self.results[exc.error] += 1
            raise
        self.results["valid"] += 1
        return access

    def _check_revoked(self, access: AccessToken) -> None:
        if self.deny.check(access) is not None:
            raise InvalidToken(REVOKED)

    def _cached(self, token: str) -> AccessToken | None:
        """The token's verified claims if the cache holds them and the keys still vouch."""
        cache = self.cache
        if not cache.max_size:
            return None
        jwks = self.jwks
        if jwks.generation != cache.generation:
            cache.sync(jwks.generation, jwks.kids)
        now = self.verifier.clock()
        # Past max_stale the keys no longer vouch for anything: take the slow path,
        # which fails closed with 503 like an uncached token would.
        if not jwks.usable(now):
            return None
        return cache.get(token, now)

    async def _verified(self, token: str) -> AccessToken:
        """The token's verified claims: parsed, its key looked up, checked, and cached."""
        # The header names the key: an unknown kid is refused before the payload is decoded.
        split = self.verifier.parse_header(token)
        kid = split.header["kid"]
        if self.deny.active and self.deny.check_kid(kid) is not None:
            raise InvalidToken(REVOKED)
        key = await self.jwks.get_key(kid)
        access = self.verifier.verify(split.complete(), key)
        self.cache.put(token, access)
        return access


# RFC 6750 §3.1: the errors a challenge names (a request with no token names none).
_CHALLENGE_ERRORS = frozenset({"invalid_token", "invalid_request", "insufficient_scope"})


def dpop_challenges(
    exc: KeyhouseError,
    *,
    realm: str,
    scheme: str | None,
    accepts_bearer: bool,
    dpop_algorithms: Sequence[str],
) -> list[str] | None:
    """The ``WWW-Authenticate`` values of a refusal at a service that accepts DPoP, or None
    when the answer is the plain Bearer one (``shared.errors.render_error``'s, unchanged).

    ``scheme`` is the request's ``Authorization`` scheme, lower case (None: no header).

    * No token (:class:`MissingToken`): a Bearer challenge when Bearer is accepted and a DPoP
      one (``algs``), each its own field (RFC 9449 §7.1, RFC 9110 §11.6.1).
    * A bad proof (``invalid_dpop_proof``, ``use_dpop_nonce``), or an error met on the DPoP
      scheme, or any error when Bearer is not accepted: one DPoP challenge naming it.
    * Otherwise (a Bearer request): None. Errors that name no challenge (503, 404...): [].
    """
    if not exc.expose:
        return []
    if isinstance(exc, MissingToken):
        dpop = dpop_challenge(dpop_algorithms, realm=realm)
        return [f'Bearer realm="{realm}"', dpop] if accepts_bearer else [dpop]
    dpop_error = isinstance(exc, InvalidDPoPProof)
    if not dpop_error and accepts_bearer and scheme != DPOP:
        return None
    if not dpop_error and (
        exc.error not in _CHALLENGE_ERRORS or exc.status_code not in (400, 401, 403)
    ):
        return []
    challenge = dpop_challenge(dpop_algorithms, exc, realm=realm)
    if isinstance(exc, InsufficientScope) and exc.scope:
        challenge += f', scope="{exc.scope}"'
    return [challenge]
