"""Baseline for issue 7, scenario 3: the resource server people write by hand.

A Starlette app that verifies bearer tokens with PyJWT's `PyJWKClient` (defaults: JWK Set cached
for 300 s) against the issuer's jwks_uri, the way PyJWT's documentation shows it. Keyhouse's
resource service must serve `GET /whoami` at >= 1.5x this app's rate on the same core.

    python bench/baseline_pyjwt_app.py --port 8009 [--workers 1]

Environment: BASELINE_ISSUER (the exact `iss`, default http://127.0.0.1:8000), BASELINE_AUDIENCE
(default photos), BASELINE_JWKS_URL (default: jwks_uri from the issuer's RFC 8414 metadata).
Same server options as Keyhouse's `serve`: uvloop, httptools, no access log.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _jwks_url(issuer: str) -> str:
    explicit = os.environ.get("BASELINE_JWKS_URL")
    if explicit:
        return explicit
    meta_url = issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
    with urllib.request.urlopen(meta_url, timeout=5) as resp:
        meta: dict[str, Any] = json.load(resp)
    return str(meta["jwks_uri"])


def create_app() -> Starlette:
    issuer = os.environ.get("BASELINE_ISSUER", "http://127.0.0.1:8000")
    audience = os.environ.get("BASELINE_AUDIENCE", "photos")
    jwks_client = jwt.PyJWKClient(_jwks_url(issuer))

    def _unauthorized(error: str, description: str) -> JSONResponse:
        return JSONResponse(
            {"error": error, "error_description": description},
            status_code=401,
            headers={"WWW-Authenticate": f'Bearer realm="{audience}", error="{error}"'},
        )

    async def whoami(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _unauthorized("invalid_request", "missing bearer token")
        try:
            signing_key = jwks_client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return _unauthorized("invalid_token", str(exc))
        return JSONResponse(claims)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/whoami", whoami), Route("/healthz", healthz)])


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="PyJWT PyJWKClient baseline resource server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8009)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    uvicorn.run(
        "baseline_pyjwt_app:create_app",
        factory=True,
        app_dir=here,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
