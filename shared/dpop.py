"""DPoP proofs (RFC 9449): the checks of §4.3 on one proof, for any app, framework-free.

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
import json
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shared.clock import Clock, system_clock
from shared.dpop_replay import ReplayCache
from shared.errors import KeyhouseError
from shared.jws import DEFAULT_MAX_TOKEN_BYTES, b64url_decode, b64url_encode, strict_json_object

PROOF_TYP = "dpop+jwt"
DEFAULT_ALGORITHMS = ("ES256", "RS256")
MAX_HTU_LENGTH = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


# --- Errors ----------------------------------------------------------------------------------


class InvalidDPoPProof(KeyhouseError):
    """RFC 9449 §5 and §7.1 ``invalid_dpop_proof``. 401 by default (a resource server); the
    token endpoint answers 400: pass ``status_code`` (or set it on :class:`DPoPVerifier`)."""

    error = "invalid_dpop_proof"
    status_code = 401

    def __init__(
        self,
        description: str = "",
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description, headers=headers)
        if status_code is not None:
            self.status_code = status_code


_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class UseDPoPNonce(InvalidDPoPProof):
    """RFC 9449 §8, §9 ``use_dpop_nonce``: retry with ``nonce``, sent in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"

    def __init__(
        self, nonce: str, description: str = "", *, status_code: int | None = None
    ) -> None:
        if not _NONCE.fullmatch(nonce):  # RFC 9449 §8.1: NQCHAR, and it becomes a header value
            raise ValueError("a DPoP nonce must be 1 or more characters %x21 / %x23-5B / %x5D-7E")
        super().__init__(
            description or "a DPoP nonce is required",
            status_code=status_code,
            headers={"DPoP-Nonce": nonce},
        )
        self.nonce = nonce


_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def dpop_challenge(
    algorithms: Collection[str], error: KeyhouseError | None = None, *, realm: str | None = None
) -> str:
    """The ``WWW-Authenticate`` value of RFC 9449 §7.1: ``DPoP algs="ES256 RS256"``, with
    ``error`` and ``error_description`` when ``error`` is given (a request without any token
    names none), and ``realm`` first when given."""
    params = []
    if realm is not None:
        if not _REALM.fullmatch(realm):
            raise ValueError("realm holds characters a quoted string cannot")
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error.error}"')
        if error.description:
            params.append(f'error_description="{error.description}"')  # already quote-safe
    params.append(f'algs="{" ".join(algorithms)}"')
    return "DPoP " + ", ".join(params)


def one_proof(values: Sequence[str]) -> str:
    """The one ``DPoP`` header value (§4.3 check 1: not more than one field)."""
    if len(values) != 1:
        raise InvalidDPoPProof("exactly one DPoP header is required")
    return values[0]


# --- Keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alg:
    kty: str
    hash: Callable[[], hashes.HashAlgorithm]
    curve: str = ""  # EC: the JWK crv
    pss: bool = False  # RSA: PSS (RFC 7518 §3.5) instead of PKCS#1 v1.5


_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
SUPPORTED_ALGORITHMS: dict[str, _Alg] = {
    "ES256": _Alg("EC", hashes.SHA256, curve="P-256"),
    "ES384": _Alg("EC", hashes.SHA384, curve="P-384"),
    "ES512": _Alg("EC", hashes.SHA512, curve="P-521"),
    "RS256": _Alg("RSA", hashes.SHA256),
    "RS384": _Alg("RSA", hashes.SHA384),
    "RS512": _Alg("RSA", hashes.SHA512),
    "PS256": _Alg("RSA", hashes.SHA256, pss=True),
    "PS384": _Alg("RSA", hashes.SHA384, pss=True),
    "PS512": _Alg("RSA", hashes.SHA512, pss=True),
}
# RFC 7638 §3.2: the required members of each key type, the only ones the thumbprint hashes.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint (base64url) of an EC or RSA JWK: its required members,
    in lexicographic order, as JSON without whitespace. ValueError for anything else.

    (shared.keys.thumbprint takes an RSA key object only; a proof's key may be EC.)"""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("thumbprints are defined here for EC and RSA keys only")
    if not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("the key lacks a required member")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidDPoPProof(f"DPoP key lacks {name}")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise InvalidDPoPProof(f"DPoP key member {name} is malformed") from exc


def public_key_from_jwk(jwk: Any, alg: str) -> PublicKey:
    """The public key a proof's ``jwk`` holds, if it is one ``alg`` can use (see module doc)."""
    spec = SUPPORTED_ALGORITHMS[alg]
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof("DPoP proof jwk is not an object")
    if PRIVATE_MEMBERS & jwk.keys():
        raise InvalidDPoPProof("DPoP proof jwk holds a private key")
    if jwk.get("kty") != spec.kty or jwk.get("alg", alg) != alg:
        raise InvalidDPoPProof("DPoP proof jwk is not a key for its alg")
    try:
        if spec.kty == "EC":
            if jwk.get("crv") != spec.curve:
                raise InvalidDPoPProof("DPoP proof jwk is on another curve than its alg")
            curve, size = _CURVES[spec.curve]
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != size or len(y) != size:
                raise InvalidDPoPProof("DPoP proof jwk coordinates have the wrong length")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            )
            return numbers.public_key()  # ValueError: not a point on the curve
        n, e = _member(jwk, "n"), _member(jwk, "e")
        if not n or n[0] == 0 or not e or e[0] == 0:
            raise InvalidDPoPProof("DPoP proof jwk is not minimally encoded")
        modulus = int.from_bytes(n, "big")
        if not RSA_MIN_BITS <= modulus.bit_length() <= RSA_MAX_BITS:
            raise InvalidDPoPProof("DPoP proof RSA key size is not allowed")
        if int.from_bytes(e, "big") != 65537:
            raise InvalidDPoPProof("DPoP proof RSA key exponent is not 65537")
        return rsa.RSAPublicNumbers(65537, modulus).public_key()
    except ValueError as exc:
        raise InvalidDPoPProof("DPoP proof jwk is not a valid public key") from exc


def _signature_valid(key: PublicKey, alg: str, signature: bytes, signing_input: bytes) -> bool:
    spec = SUPPORTED_ALGORITHMS[alg]
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = _CURVES[spec.curve][1]
            if len(signature) != 2 * size:  # RFC 7518 §3.4: R || S, fixed length
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(spec.hash()))
        elif spec.pss:
            digest = spec.hash()
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signing_input, pss, digest)
        else:
            key.verify(signature, signing_input, padding.PKCS1v15(), spec.hash())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- htu -------------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(output) + ("/" if trailing and output else "")


def normalize_htu(url: str) -> str:
    """An http(s) URL without query and fragment, normalised as RFC 9449 §4.3 asks (RFC 3986
    §6.2.2 and §6.2.3): scheme and host in lower case, the scheme's default port dropped,
    percent-encodings of unreserved characters decoded and the others in upper case, dot
    segments removed, an empty path as ``/``. ValueError for anything else (a relative URL,
    another scheme, userinfo, characters outside printable ASCII, over ``MAX_HTU_LENGTH``)."""
    if len(url) > MAX_HTU_LENGTH or not all("\x21" <= c <= "\x7e" for c in url):
        raise ValueError("not a printable ASCII URL of reasonable length")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URL without userinfo")
    host = parts.hostname or ""
    if not host:
        raise ValueError("no host")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError when out of range or not a number
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _PERCENT.sub(_percent, parts.path) or "/"
    if not path.startswith("/"):
        raise ValueError("not an absolute path")
    return f"{scheme}://{authority}{_remove_dot_segments(path)}"


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
        header, payload, signing_input, signature = self._parse(proof)
        if header.get("typ") != PROOF_TYP:
            raise self._refuse("DPoP proof typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in settings.algorithms:
            raise self._refuse("DPoP proof alg is not allowed")
        if "jwk" not in header:
            raise self._refuse("DPoP proof has no jwk")
        key = public_key_from_jwk(header["jwk"], alg)
        if not _signature_valid(key, alg, signature, signing_input):
            raise self._refuse("DPoP proof signature is invalid")

        jti, htm, htu, iat = (payload.get(c) for c in ("jti", "htm", "htu", "iat"))
        if not isinstance(jti, str) or not 1 <= len(jti) <= settings.max_jti_length:
            raise self._refuse("DPoP proof jti is missing or malformed")
        if not isinstance(htm, str) or htm != method:
            raise self._refuse("DPoP proof htm does not match the request method")
        if not isinstance(htu, str):
            raise self._refuse("DPoP proof htu is missing")
        try:
            proof_url = normalize_htu(htu)
        except ValueError as exc:
            raise self._refuse("DPoP proof htu is not an http(s) URL") from exc
        try:
            request_url = normalize_htu(url)
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
        jkt = thumbprint(header["jwk"])
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
        return DPoPProof(jkt, jti, htm, proof_url, float(iat), alg, key)

    def _parse(self, proof: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
        if not isinstance(proof, str) or len(proof) > self.settings.max_proof_bytes:
            raise self._refuse("DPoP proof is too large")
        if not proof.isascii():
            raise self._refuse("DPoP proof is malformed")
        parts = proof.split(".")
        if len(parts) != 3:
            raise self._refuse("DPoP proof is not a compact JWS")
        header_b64, payload_b64, signature_b64 = parts
        try:
            header = strict_json_object(b64url_decode(header_b64))
        except ValueError as exc:
            raise self._refuse("DPoP proof header is malformed") from exc
        if _REFUSED_HEADER & header.keys():
            raise self._refuse("DPoP proof header has a member that is not allowed")
        try:
            payload = strict_json_object(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
        except ValueError as exc:
            raise self._refuse("DPoP proof payload or signature is malformed") from exc
        return header, payload, f"{header_b64}.{payload_b64}".encode("ascii"), signature


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )
