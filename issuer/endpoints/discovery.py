"""Discovery: the RFC 8414 metadata document (at both well-known paths) and the JWKS."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import issuer_of
from issuer.settings import IssuerSettings
from shared.protocol import (
    GRANT_TYPES,
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
)

_CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def metadata_document(settings: IssuerSettings, scopes: list[str]) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata."""
    base = settings.issuer_url
    return {
        "issuer": base,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "revocation_endpoint": base + REVOCATION_PATH,
        "introspection_endpoint": base + INTROSPECTION_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(_CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(_CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(_CLIENT_AUTH_METHODS),
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
    }


async def metadata(request: Request) -> Response:
    issuer = issuer_of(request)
    scopes = await anyio.to_thread.run_sync(issuer.tokens.accounts.all_scopes)
    return JSONResponse(
        metadata_document(issuer.settings, scopes),
        headers={"Cache-Control": f"public, max-age={issuer.settings.jwks_max_age}"},
    )


async def jwks(request: Request) -> Response:
    """The published keys, with ``max-age`` and an ``ETag`` (304 on ``If-None-Match``)."""
    issuer = issuer_of(request)
    body, etag, max_age = issuer.keyring.jwks()
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag in {t.strip() for t in inm.split(",")} | {"*"} - {""}:
        issuer.metrics.jwks_requests.labels("304").inc()
        return Response(status_code=304, headers=headers)
    issuer.metrics.jwks_requests.labels("200").inc()
    return Response(body, media_type="application/json", headers=headers)
