"""Measures the choices the README explains: how Keyhouse signs and verifies tokens, and why the
token endpoint does not run authlib's synchronous AuthorizationServer in a worker thread.

    .venv/bin/python bench/jose_choice.py

Prints operations per second and ratios, all measured in this run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import anyio.to_thread
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jws, jwt
from joserfc.jwk import RSAKey

from shared.jwks import parse_jwk
from shared.keys import generate_signing_key
from shared.tokens import TokenSigner, TokenVerifier, access_token_claims


def rate(func: Callable[[], object], seconds: float = 1.5) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            func()
        count += 100
    return count / (time.perf_counter() - start)


def main() -> None:
    key = generate_signing_key()
    now = time.time()
    claims = access_token_claims(
        issuer="https://i",
        subject="s",
        audience="photos",
        client_id="c",
        scopes=frozenset({"a"}),
        now=now,
        ttl=900,
    )
    token = TokenSigner(key).sign(claims)
    vkey = parse_jwk(key.public_jwk())
    verifier = TokenVerifier(issuer="https://i", audience="photos")
    public = RSAKey.import_key(key.public_key)
    signing_input, _, sig = token.rpartition(".")

    def ours() -> None:
        verifier.verify(verifier.parse(token), vkey)

    def joserfc_decode() -> None:
        decoded = jwt.decode(token, public, algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": "https://i"},
            aud={"essential": True, "value": "photos"},
        ).validate(decoded.claims)

    def raw_verify() -> None:
        from shared.jws import b64url_decode

        vkey.public_key.verify(
            b64url_decode(sig), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )

    signer = TokenSigner(key)
    private = RSAKey.import_key(key.private_key)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}

    def raw_sign() -> None:
        key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())

    def joserfc_sign() -> None:
        payload = json.dumps(claims, separators=(",", ":")).encode()
        jws.serialize_compact(header, payload, private, algorithms=["RS256"])

    raw_s = rate(raw_sign)
    print(f"raw RSA sign              {raw_s:10.0f}/s")
    for name, func in (
        ("keyhouse TokenSigner", lambda: signer.sign(claims)),
        ("joserfc serialize_compact", joserfc_sign),
    ):
        r = rate(func)
        print(f"{name:<25} {r:10.0f}/s  ratio to raw sign {r / raw_s:.2f}")

    raw = rate(raw_verify)
    print(f"raw RSA verify            {raw:10.0f}/s")
    for name, func in (
        ("keyhouse strict verify", ours),
        ("joserfc decode+validate", joserfc_decode),
    ):
        r = rate(func)
        print(f"{name:<25} {r:10.0f}/s  ratio to raw verify {r / raw:.2f}")

    async def hops() -> tuple[float, float]:
        def noop() -> None:
            return None

        n = 5000
        start = time.perf_counter()
        for _ in range(n):
            await anyio.to_thread.run_sync(noop)
        hop = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for _ in range(n):
            noop()
        inline = (time.perf_counter() - start) / n
        return hop, inline

    hop, inline = asyncio.run(hops())
    sign = 1 / rate(lambda: key.private_key.sign(b"x" * 300, padding.PKCS1v15(), hashes.SHA256()))
    print(
        f"worker-thread hop         {hop * 1e6:8.1f} us  ({hop / sign:.0%} of one RSA-2048 sign,"
        f" {sign * 1e6:.0f} us)"
    )
    print(f"inline call               {inline * 1e6:8.3f} us")


if __name__ == "__main__":
    main()
