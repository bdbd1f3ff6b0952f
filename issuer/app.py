"""The issuer's Starlette app: thin HTTP glue over the token service and the key ring."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer import audit, http
from issuer.accounts import AccountStore
from issuer.admin import KeyAdmin
from issuer.db import init_schema, make_engine
from issuer.introspection import Introspector
from issuer.keystore import KeyRing, open_key_repository
from issuer.metrics import IssuerMetrics
from issuer.refresh import RefreshTokenStore
from issuer.settings import IssuerSettings
from issuer.token_endpoint import TokenFastPath
from issuer.token_service import GRANT_TYPES, UNKNOWN_ADDRESS, TokenService
from shared.bearer import extract_bearer
from shared.clock import Clock, system_clock
from shared.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    KeyhouseError,
    MethodNotAllowed,
)
from shared.tokens import TokenVerifier

logger = logging.getLogger("keyhouse.issuer")

ADMIN_AUDIENCE = "issuer"
ADMIN_SCOPE = "issuer:admin"


@dataclass
class Issuer:
    """Everything the endpoints need; built and torn down by the app's lifespan."""

    settings: IssuerSettings
    keyring: KeyRing
    tokens: TokenService
    introspector: Introspector
    admin: KeyAdmin
    admin_verifier: TokenVerifier
    metrics: IssuerMetrics


def build_issuer(settings: IssuerSettings, *, clock: Clock = system_clock) -> Issuer:
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    init_schema(engine)
    repo = open_key_repository(settings, engine, clock())
    keyring = KeyRing(repo, jwks_max_age=settings.jwks_max_age, clock=clock)
    keyring.reload()
    accounts = AccountStore(engine)
    refresh = RefreshTokenStore(
        engine, ttl=settings.refresh_token_ttl, idle_ttl=settings.refresh_token_idle_ttl
    )
    tokens = TokenService(settings, keyring, accounts, refresh, clock=clock)
    return Issuer(
        settings=settings,
        keyring=keyring,
        tokens=tokens,
        introspector=Introspector(settings, keyring, refresh, clock=clock),
        admin=KeyAdmin(repo, clock=clock),
        admin_verifier=TokenVerifier(
            issuer=settings.issuer_url, audience=ADMIN_AUDIENCE, clock=clock
        ),
        metrics=IssuerMetrics(),
    )


def metadata_document(settings: IssuerSettings, scopes: list[str]) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata."""
    base = settings.issuer_url
    return {
        "issuer": base,
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/revoke",
        "introspection_endpoint": f"{base}/introspect",
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
    }


def _address(request: Request) -> str:
    """The peer address (uvicorn applies X-Forwarded-For only from --forwarded-allow-ips)."""
    return request.client.host if request.client else UNKNOWN_ADDRESS


def _issuer(request: Request) -> Issuer:
    issuer: Issuer = request.app.state.issuer
    return issuer


# -- endpoints ----------------------------------------------------------------------------------


async def metadata(request: Request) -> Response:
    issuer = _issuer(request)
    scopes = await anyio.to_thread.run_sync(issuer.tokens.accounts.all_scopes)
    return JSONResponse(
        metadata_document(issuer.settings, scopes),
        headers={"Cache-Control": f"public, max-age={issuer.settings.jwks_max_age}"},
    )


async def jwks(request: Request) -> Response:
    issuer = _issuer(request)
    body, etag, max_age = issuer.keyring.jwks()
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag in {t.strip() for t in inm.split(",")} | {"*"} - {""}:
        issuer.metrics.jwks_requests.labels("304").inc()
        return Response(status_code=304, headers=headers)
    issuer.metrics.jwks_requests.labels("200").inc()
    return Response(body, media_type="application/json", headers=headers)


async def revoke(request: Request) -> Response:
    issuer = _issuer(request)
    if request.method != "POST":
        raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
    form = await http.read_form(request, issuer.settings.max_body_bytes)
    address = _address(request)
    client = await issuer.tokens.authenticate_request(
        form, request.headers.get("authorization"), address
    )
    ended = await anyio.to_thread.run_sync(lambda: issuer.introspector.revoke(form, client))
    if ended:
        await anyio.to_thread.run_sync(
            lambda: issuer.tokens.audit.record(
                audit.REFRESH_REVOKED,
                client_id=client.client_id,
                address=address,
                detail="refresh-token family ended at the revocation endpoint",
            )
        )
    return Response(status_code=200, headers=http.NO_STORE)


async def introspect(request: Request) -> Response:
    issuer = _issuer(request)
    if request.method != "POST":
        raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
    form = await http.read_form(request, issuer.settings.max_body_bytes)
    client = await issuer.tokens.authenticate_request(
        form, request.headers.get("authorization"), _address(request)
    )
    body = await anyio.to_thread.run_sync(lambda: issuer.introspector.introspect(form, client))
    return JSONResponse(body, headers=http.NO_STORE)


def _require_admin(request: Request) -> None:
    issuer = _issuer(request)
    try:
        token = extract_bearer(request.headers.get("authorization"))
        verifier = issuer.admin_verifier
        jwt = verifier.parse(token)
        key = issuer.keyring.verification_key(jwt.header["kid"])
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        access = verifier.verify(jwt, key)
        if ADMIN_SCOPE not in access.scopes:
            raise InsufficientScope(f"requires scope {ADMIN_SCOPE}", scope=ADMIN_SCOPE)
    except KeyhouseError as exc:
        issuer.metrics.verifications.labels(exc.error).inc()
        raise
    issuer.metrics.verifications.labels("valid").inc()


async def admin_keys(request: Request) -> Response:
    _require_admin(request)
    issuer = _issuer(request)
    status = await anyio.to_thread.run_sync(issuer.admin.status)
    return JSONResponse(status, headers=http.NO_STORE)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


async def _rotate_now_flag(request: Request) -> bool:
    """``now`` from the query string (``?now=true``) or a JSON body ``{"now": true}``."""
    raw: object = request.query_params.get("now")
    body = await request.body()
    if body.strip():
        try:
            data = json.loads(body)
        except ValueError:
            raise InvalidRequest('the body must be JSON like {"now": true}') from None
        if not isinstance(data, dict) or set(data) - {"now"}:
            raise InvalidRequest('the body must be JSON like {"now": true}')
        raw = data.get("now", raw)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise InvalidRequest("now must be true or false")


async def admin_rotate(request: Request) -> Response:
    _require_admin(request)
    issuer = _issuer(request)
    immediate = await _rotate_now_flag(request)
    record = await anyio.to_thread.run_sync(lambda: issuer.admin.rotate(now=immediate))
    await anyio.to_thread.run_sync(issuer.keyring.reload)
    status = 201 if record["created"] else 200
    return JSONResponse(record, status_code=status, headers=http.NO_STORE)


async def admin_revoke(request: Request) -> Response:
    _require_admin(request)
    issuer = _issuer(request)
    kid = request.path_params["kid"]
    record = await anyio.to_thread.run_sync(lambda: issuer.admin.revoke(kid))
    await anyio.to_thread.run_sync(issuer.keyring.reload)
    return JSONResponse(record, headers=http.NO_STORE)


async def healthz(request: Request) -> Response:
    issuer = _issuer(request)
    signer = issuer.keyring.signer()
    body = {"status": "ok", "issuer": issuer.settings.issuer_url, "signing_kid": signer.kid}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    issuer = _issuer(request)
    issuer.metrics.published_keys.set(len(json.loads(issuer.keyring.jwks()[0])["keys"]))
    return Response(generate_latest(issuer.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# -- the app ------------------------------------------------------------------------------------


async def _reload_keys_forever(issuer: Issuer) -> None:
    """Pick up keys rotated or revoked by another process (the CLI, another replica), and run
    the rotation scheduler: whichever process notices that the signing key has no successor
    schedules one (the database makes sure only one is created)."""
    while True:
        await asyncio.sleep(issuer.settings.key_refresh_interval)
        try:
            created = await anyio.to_thread.run_sync(issuer.admin.tick)
            if created is not None:
                logger.info(
                    "scheduled signing key %s: published at %s, signs from %s",
                    created["kid"],
                    created["publish_at"],
                    created["activate_at"],
                )
        except Exception as exc:  # keep serving; the next tick (or another replica) retries
            logger.warning("key rotation scheduler failed: %s", type(exc).__name__)
        try:
            await anyio.to_thread.run_sync(issuer.keyring.reload)
        except Exception as exc:  # keep serving with the keys we have
            logger.warning("reloading signing keys failed: %s", type(exc).__name__)


def create_app(settings: IssuerSettings, *, clock: Clock = system_clock) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        issuer = await anyio.to_thread.run_sync(lambda: build_issuer(settings, clock=clock))
        app.state.issuer = issuer
        task = asyncio.create_task(_reload_keys_forever(issuer))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await anyio.to_thread.run_sync(issuer.tokens.close)
            issuer.keyring.repo.engine.dispose()

    # Matched in order: the busiest endpoints first. /token is served ahead of the router by
    # TokenFastPath (issuer/token_endpoint.py), whatever the method.
    routes = [
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/.well-known/openid-configuration", metadata, methods=["GET"]),
        Route("/revoke", revoke, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/introspect", introspect, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/admin/keys", admin_keys, methods=["GET"]),
        Route("/admin/keys/rotate", admin_rotate, methods=["POST"]),
        Route("/admin/keys/{kid}/revoke", admin_revoke, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TokenFastPath)],
        lifespan=lifespan,
        exception_handlers={
            KeyhouseError: http.handle_keyhouse_error,
            HTTPException: http.handle_http_exception,
            Exception: http.handle_unexpected,
        },
    )
