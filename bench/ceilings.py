"""In-process ceilings for Keyhouse's benchmarks (issue 7).

Measures, on one core when asked:
  * raw RSA-2048 PKCS#1 v1.5 / SHA-256 signatures per second through `cryptography`
    (the ceiling for `POST /token`, which must sign one JWT per request);
  * raw RSA-2048 verifications per second (the ceiling for a resource service's token check);
  * PyJWT `jwt.decode` of an RS256 access token per second (what a plain PyJWT verifier pays:
    base64 + JSON + verify + claim checks), and PyJWT `jwt.encode` per second.

Prints one JSON object on stdout. Usage:
    python bench/ceilings.py [--seconds 5] [--cpu 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _rate(fn: Callable[[], object], seconds: float) -> dict[str, float]:
    """Calls fn in a tight loop for about `seconds`; returns ops/s (after a short warm-up)."""
    warm_until = time.perf_counter() + min(0.2, seconds / 10)
    while time.perf_counter() < warm_until:
        fn()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    # Check the clock every 16 calls: cheap compared to an RSA operation.
    while True:
        for _ in range(16):
            fn()
        n += 16
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return {"ops": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1)}


def measure(seconds: float, only: str = "") -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    # A signing input the size of a real RFC 9068 access token's header.payload (~330 bytes).
    header = b"eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ"
    signing_input = header + b"." + b"e" * 280
    pkcs1 = padding.PKCS1v15()
    sha256 = hashes.SHA256()
    signature = key.sign(signing_input, pkcs1, sha256)

    sign = _rate(lambda: key.sign(signing_input, pkcs1, sha256), seconds)
    if only == "sign":
        return {"rsa2048_sign": sign}
    results: dict[str, Any] = {
        "rsa2048_sign": sign,
        "rsa2048_verify": _rate(
            lambda: pub.verify(signature, signing_input, pkcs1, sha256), seconds
        ),
    }

    try:
        import jwt  # PyJWT
    except ImportError:  # pragma: no cover - PyJWT is a dev extra
        results["pyjwt_decode"] = None
        results["pyjwt_encode"] = None
    else:
        now = int(time.time())
        claims = {
            "iss": "http://127.0.0.1:8000",
            "sub": "client:bench",
            "aud": "photos",
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "jti": "0123456789abcdef0123456789abcdef",
            "client_id": "bench",
            "scope": "photos:read photos:write",
        }
        hdr = {"typ": "at+jwt", "kid": "bench"}
        token = jwt.encode(claims, key, algorithm="RS256", headers=hdr)
        results["pyjwt_decode"] = _rate(
            lambda: jwt.decode(
                token,
                pub,
                algorithms=["RS256"],
                audience="photos",
                issuer="http://127.0.0.1:8000",
            ),
            seconds,
        )
        results["pyjwt_encode"] = _rate(
            lambda: jwt.encode(claims, key, algorithm="RS256", headers=hdr), seconds
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (sched_setaffinity)")
    ap.add_argument("--only", choices=["sign"], default="", help="measure RSA signing only")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    from cryptography import __version__ as crypto_version
    from cryptography.hazmat.backends.openssl.backend import backend

    out = {
        "python": platform.python_version(),
        "cryptography": crypto_version,
        "openssl": backend.openssl_version_text(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "seconds_per_measurement": args.seconds,
        **measure(args.seconds, args.only),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
