"""DPoP proofs (RFC 9449): the checks of §4.3 on one proof, for any app, framework-free.

The proof's key and signature are :mod:`shared.dpop_keys`'s, ``htu`` normalisation is
:mod:`shared.dpop_htu`'s, the errors and challenges :mod:`shared.dpop_errors`'s; their public
names are importable from here too.

:meth:`DPoPVerifier.verify` takes the proof (the one ``DPoP`` header value, see :func:`one_proof`),
the request's method and URL, and, at a resource server, the access token and its ``cnf.jkt``.
It answers a :class:`DPoPProof` or raises :class:`InvalidDPoPProof` (``invalid_dpop_proof``),
:class:`UseDPoPNonce` (``use_dpop_nonce``, only with a nonce policy) or, when the replay cache
is full, :class:`~shared.dpop_replay.ReplayCacheFull` (503). In order, cheapest first:

* the compact JWS, strictly: at most ``max_proof_bytes``, three segments, canonical unpadded
  base64url, strict JSON objects (no duplicate members, :func:`shared.jws.strict_json_object`);
  no ``crit``, ``jku``, ``x5u`` or ``x5c`` (the split is shared.jws's, redone here with its
  primitives because :func:`shared.jws.parse_header` refuses any ``jwk``, rightly for access
  tokens);
* header ``typ`` exactly ``dpop+jwt``; ``alg`` in the allow-list (default ES256 and RS256; the
  supported set is asymmetric only: never ``none``, never HMAC);
* header ``jwk`` a public key only: no private member (``d``, ``p``, ``q``, ``dp``, ``dq``,
  ``qi``, ``oth``, ``k``), ``kty`` ``EC`` or ``RSA`` (never ``oct``) and the one ``alg`` names
  (the key's own ``alg``, if it has one, the same; an EC key on the ``alg``'s curve with
  fixed-length coordinates on the curve; RSA of 2048 to 4096 bits, exponent 65537, minimally
  encoded);
* the signature, with that key (``cryptography``);
* claims: ``jti`` a string of 1 to ``max_jti_length`` characters; ``htm`` equal to the request
  method; ``htu`` equal to the request URL, both normalised by :func:`normalize_htu`; ``iat`` a
  number within ``max_age`` seconds past and ``max_future`` ahead of the injected clock;
* with an access token: ``ath`` equal to base64url(SHA-256(token)), constant time;
* with an expected ``jkt`` (the token's ``cnf.jkt``): the key's RFC 7638 thumbprint, constant time;
* with a nonce policy: the ``nonce`` claim (RFC 9449 §8, §9);
* last, the ``jti`` is recorded in the replay cache (per key and ``htu``): a proof seen before
  within the window is refused. Only proofs that passed everything else take a slot.

**The request URL** is the URL the client addressed: scheme, host and port as the client saw them
and the raw (still percent-encoded) path. Behind a reverse proxy that is not the socket's address:
build it from ``X-Forwarded-Proto``/``X-Forwarded-Host`` only when the proxy is trusted to set
them (Keyhouse's servers honour those headers only from ``--forwarded-allow-ips``), or from a
configured public base URL; never from headers any client can send.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.clock import Clock, system_clock
from shared.dpop_errors import InvalidDPoPProof, UseDPoPNonce, dpop_challenge, one_proof
from shared.dpop_htu import MAX_HTU_LENGTH, normalize_htu
from shared.dpop_keys import (
    PRIVATE_MEMBERS,
    SUPPORTED_ALGORITHMS,
    PublicKey,
    public_key_from_jwk,
    signature_valid,
    thumbprint,
)
from shared.dpop_replay import ReplayCache
from shared.errors import KeyhouseError
from shared.jws import DEFAULT_MAX_TOKEN_BYTES, b64url_decode, b64url_encode, strict_json_object

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_HTU_LENGTH",
    "PRIVATE_MEMBERS",
    "PROOF_TYP",
    "SUPPORTED_ALGORITHMS",
    "DPoPProof",
    "DPoPSettings",
    "DPoPVerifier",
    "InvalidDPoPProof",
    "NoncePolicy",
    "PublicKey",
    "UseDPoPNonce",
    "access_token_hash",
    "dpop_challenge",
    "normalize_htu",
    "one_proof",
    "public_key_from_jwk",
    "thumbprint",
]

PROOF_TYP = "dpop+jwt"
DEFAULT_ALGORITHMS = ("ES256", "RS256")


def access_token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url(SHA-256(the access token))."""
    return b64url_encode(hashlib.sha256(access_token.encode("utf-8", "surrogatepass")).digest())


# --- The verifier ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DPoPProof:
    """A proof that passed every check."""

    jkt: str  # RFC 7638 thumbprint of the proof key: the token's cnf.jkt
    jti: str
    htm: str
    htu: str  # normalised
    iat: float
    alg: str
    public_key: PublicKey = field(repr=False)


NoncePolicy = Callable[[str | None], str | None]
"""Called with the proof's ``nonce`` claim (None when absent): None accepts it; a string is the
fresh nonce to demand instead (:class:`UseDPoPNonce`, ``DPoP-Nonce: <it>``)."""


@dataclass(frozen=True)
class DPoPSettings:
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_age: float = 60.0  # how old a proof's iat may be, in seconds
    max_future: float = 5.0  # how far ahead of our clock a proof's iat may be
    max_jti_length: int = 256
    max_proof_bytes: int = DEFAULT_MAX_TOKEN_BYTES

    def __post_init__(self) -> None:
        unknown = [a for a in self.algorithms if a not in SUPPORTED_ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"DPoP algorithms must be some of {sorted(SUPPORTED_ALGORITHMS)}")
        if not (0 < self.max_age < math.inf and 0 <= self.max_future < math.inf):
            raise ValueError("max_age must be positive and max_future not negative")
        if self.max_jti_length < 1 or self.max_proof_bytes < 1:
            raise ValueError("max_jti_length and max_proof_bytes must be positive")

    @property
    def replay_lifetime(self) -> float:
        """How long a seen ``jti`` must be remembered (see shared.dpop_replay)."""
        return self.max_age + self.max_future


_REFUSED_HEADER = frozenset({"crit", "jku", "x5u", "x5c"})

# The memos below (one verifier's): a client signs every proof with the same key, so every proof
# it sends has the same protected header, and a service sees few request URLs. Measured by bench
# scenario 11 (2026-12-03): of a proof check, building the key from the JWK and the thumbprint
# took ~5-10%, the two htu normalisations ~17%. Each memo holds at most this many entries and is
# emptied when full (the bound is the memory; a client whose entry went is checked in full once).
HEADER_MEMO_ENTRIES = 1024
HEADER_MEMO_MAX_CHARS = 2048  # a longer header segment (an RSA-4096 JWK is ~800) is not kept
URL_MEMO_ENTRIES = 256


@dataclass(frozen=True)
class _Header:
    """A protected header that passed every header check, with what they derived from it."""

    alg: str
    key: PublicKey
    jkt: str


class DPoPVerifier:
    """Checks proofs against one settings object, clock, replay cache and nonce policy."""

    def __init__(
        self,
        settings: DPoPSettings | None = None,
        *,
        clock: Clock = system_clock,
        replay_cache: ReplayCache | None = None,
        nonce_policy: NoncePolicy | None = None,
        status_code: int = 401,
    ) -> None:
        self.settings = settings or DPoPSettings()
        self._clock = clock
        if replay_cache is None:  # not `or`: an empty cache is falsy (it has a length)
            replay_cache = ReplayCache(lifetime=self.settings.replay_lifetime, clock=clock)
        self.replay_cache = replay_cache
        if self.replay_cache.lifetime < self.settings.replay_lifetime:
            raise ValueError("the replay cache forgets a jti before its proof stops passing iat")
        self._nonce_policy = nonce_policy
        self.status_code = status_code
        # Header segments of proofs that passed (the signature included) -> what their header
        # checks derived; URLs -> normalize_htu's answer. The checks are pure functions of these
        # strings and the settings, so a memo hit decides exactly as a full check would.
        self._headers: dict[str, _Header] = {}
        self._urls: dict[str, str] = {}

    def challenge(self, error: KeyhouseError | None = None, *, realm: str | None = None) -> str:
        return dpop_challenge(self.settings.algorithms, error, realm=realm)

    def _refuse(self, description: str) -> InvalidDPoPProof:
        return InvalidDPoPProof(description, status_code=self.status_code)

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        expected_jkt: str | None = None,
    ) -> DPoPProof:
        """Check ``proof`` for a ``method`` request to ``url`` (see the module doc)."""
        try:
            return self._verify(proof, method, url, access_token, expected_jkt)
        except InvalidDPoPProof as exc:
            exc.status_code = self.status_code
            raise

    def _verify(
        self,
        proof: str,
        method: str,
        url: str,
        access_token: str | None,
        expected_jkt: str | None,
    ) -> DPoPProof:
        settings = self.settings
        header_b64, payload_b64, signature_b64 = self._split(proof)
        checked = self._headers.get(header_b64)
        header = None if checked is not None else self._decode_header(header_b64)
        try:
            payload = strict_json_object(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
        except ValueError as exc:
            raise self._refuse("DPoP proof payload or signature is malformed") from exc
        if checked is None:
            assert header is not None
            checked = self._check_header(header)
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        if not signature_valid(checked.key, checked.alg, signature, signing_input):
            raise self._refuse("DPoP proof signature is invalid")
        self._remember_header(header_b64, checked)

        jti, htm, htu, iat = (payload.get(c) for c in ("jti", "htm", "htu", "iat"))
        if not isinstance(jti, str) or not 1 <= len(jti) <= settings.max_jti_length:
            raise self._refuse("DPoP proof jti is missing or malformed")
        if not isinstance(htm, str) or htm != method:
            raise self._refuse("DPoP proof htm does not match the request method")
        if not isinstance(htu, str):
            raise self._refuse("DPoP proof htu is missing")
        try:
            proof_url = self._normalized(htu)
        except ValueError as exc:
            raise self._refuse("DPoP proof htu is not an http(s) URL") from exc
        try:
            request_url = self._normalized(url)
        except ValueError as exc:
            raise self._refuse("the request URL cannot be matched") from exc
        if proof_url != request_url:
            raise self._refuse("DPoP proof htu does not match the request URL")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise self._refuse("DPoP proof iat is missing or not a number")
        now = self._clock()
        if not now - settings.max_age <= iat <= now + settings.max_future:
            raise self._refuse("DPoP proof iat is outside the acceptable window")

        if access_token is not None:
            ath = payload.get("ath")
            if not isinstance(ath, str) or not _equal(ath, access_token_hash(access_token)):
                raise self._refuse("DPoP proof ath does not match the access token")
        jkt = checked.jkt
        if expected_jkt is not None and not _equal(jkt, expected_jkt):
            raise self._refuse("DPoP proof key is not the key the token is bound to")
        if self._nonce_policy is not None:
            nonce = payload.get("nonce")
            if nonce is not None and not isinstance(nonce, str):
                raise self._refuse("DPoP proof nonce is not a string")
            fresh = self._nonce_policy(nonce)
            if fresh is not None:
                raise UseDPoPNonce(fresh, status_code=self.status_code)

        if not self.replay_cache.record(jkt, proof_url, jti):
            raise self._refuse("DPoP proof has been used before")
        return DPoPProof(jkt, jti, htm, proof_url, float(iat), checked.alg, checked.key)

    def _split(self, proof: str) -> tuple[str, str, str]:
        if not isinstance(proof, str) or len(proof) > self.settings.max_proof_bytes:
            raise self._refuse("DPoP proof is too large")
        if not proof.isascii():
            raise self._refuse("DPoP proof is malformed")
        parts = proof.split(".")
        if len(parts) != 3:
            raise self._refuse("DPoP proof is not a compact JWS")
        return parts[0], parts[1], parts[2]

    def _decode_header(self, header_b64: str) -> dict[str, Any]:
        try:
            header = strict_json_object(b64url_decode(header_b64))
        except ValueError as exc:
            raise self._refuse("DPoP proof header is malformed") from exc
        if _REFUSED_HEADER & header.keys():
            raise self._refuse("DPoP proof header has a member that is not allowed")
        return header

    def _check_header(self, header: dict[str, Any]) -> _Header:
        """``typ``, ``alg`` from the allow-list, a public ``jwk`` for it; its key and thumbprint."""
        if header.get("typ") != PROOF_TYP:
            raise self._refuse("DPoP proof typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise self._refuse("DPoP proof alg is not allowed")
        if "jwk" not in header:
            raise self._refuse("DPoP proof has no jwk")
        key = public_key_from_jwk(header["jwk"], alg)
        return _Header(alg, key, thumbprint(header["jwk"]))

    def _remember_header(self, header_b64: str, checked: _Header) -> None:
        if header_b64 in self._headers or len(header_b64) > HEADER_MEMO_MAX_CHARS:
            return
        if len(self._headers) >= HEADER_MEMO_ENTRIES:
            self._headers.clear()
        self._headers[header_b64] = checked

    def _normalized(self, url: str) -> str:
        """:func:`normalize_htu` of ``url``, remembered (a ValueError is raised, not kept)."""
        known = self._urls.get(url)
        if known is None:
            known = normalize_htu(url)
            if len(url) <= MAX_HTU_LENGTH:
                if len(self._urls) >= URL_MEMO_ENTRIES:
                    self._urls.clear()
                self._urls[url] = known
        return known


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )
