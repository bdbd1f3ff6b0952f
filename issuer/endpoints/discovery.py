"""Discovery: the RFC 8414 metadata document, which is also the OpenID Connect Discovery 1.0
document (one document at both well-known paths), and the JWKS."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import issuer_of
from issuer.settings import IssuerSettings
from shared.id_tokens import CLAIMS_SUPPORTED
from shared.pkce import METHODS as PKCE_METHODS
from shared.protocol import (
    AUTHORIZE_PATH,
    END_SESSION_PATH,
    GRANT_TYPES,
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from shared.security_events import EVENTS_PATH

_CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# Public clients (no secret) at /token and /revoke; /introspect is for confidential clients.
_PUBLIC_CLIENT = "none"
# Scopes of the protocol itself (OpenID Connect Core §3.1.2.1, §5.4), whatever clients hold.
_PROTOCOL_SCOPES = ("openid", "profile")


def metadata_document(settings: IssuerSettings, scopes: list[str]) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata with OpenID Connect Discovery 1.0 §3's."""
    base = settings.issuer_url
    return {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "userinfo_endpoint": base + USERINFO_PATH,
        "end_session_endpoint": base + END_SESSION_PATH,
        "jwks_uri": base + JWKS_PATH,
        "revocation_endpoint": base + REVOCATION_PATH,
        "introspection_endpoint": base + INTROSPECTION_PATH,
        # Issue 17: the Server-Sent Events stream of signed security events (docs/revocation.md).
        "keyhouse_events_endpoint": base + EVENTS_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": list(PKCE_METHODS),
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "token_endpoint_auth_methods_supported": [*_CLIENT_AUTH_METHODS, _PUBLIC_CLIENT],
        "revocation_endpoint_auth_methods_supported": [*_CLIENT_AUTH_METHODS, _PUBLIC_CLIENT],
        "introspection_endpoint_auth_methods_supported": list(_CLIENT_AUTH_METHODS),
        "scopes_supported": sorted({*scopes, *_PROTOCOL_SCOPES}),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": list(CLAIMS_SUPPORTED),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
        "dpop_signing_alg_values_supported": list(settings.dpop_algs),  # RFC 9449 §5.1
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
