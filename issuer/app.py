"""The issuer's Starlette app: its routes, its error handlers, and a lifespan that builds the
container (:mod:`issuer.container`) and yields it as lifespan state for the endpoints
(:mod:`issuer.endpoints`) to read. Nothing imports this module but the entry points."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from issuer import http
from issuer.container import build_issuer, close_issuer, reload_keys_forever
from issuer.endpoints.admin import (
    admin_disable_user,
    admin_enable_user,
    admin_keys,
    admin_revoke,
    admin_rotate,
)
from issuer.endpoints.authorize import authorize, consent, login
from issuer.endpoints.discovery import jwks, metadata
from issuer.endpoints.end_session import end_session
from issuer.endpoints.events import events
from issuer.endpoints.health import healthz, metrics, readyz
from issuer.endpoints.introspection import introspect
from issuer.endpoints.revocation import revoke
from issuer.endpoints.token import TokenFastPath
from issuer.endpoints.userinfo import userinfo
from issuer.events.broadcaster import on_exit_signals
from issuer.pages import static
from issuer.settings import IssuerSettings
from shared.clock import Clock, system_clock
from shared.errors import KeyhouseError
from shared.protocol import (
    AUTHORIZE_PATH,
    CONSENT_PATH,
    END_SESSION_PATH,
    HEALTH_PATH,
    INTROSPECTION_PATH,
    JWKS_PATH,
    LOGIN_PATH,
    METADATA_PATH,
    OPENID_CONFIGURATION_PATH,
    READINESS_PATH,
    REVOCATION_PATH,
    STATIC_PATH,
    USERINFO_PATH,
)
from shared.security_events import EVENTS_PATH

# Answered by the endpoint itself (405 with ``Allow: POST``) rather than the router.
_ANY_METHOD = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def create_app(settings: IssuerSettings, *, clock: Clock = system_clock) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        issuer = await anyio.to_thread.run_sync(lambda: build_issuer(settings, clock=clock))
        task = asyncio.create_task(reload_keys_forever(issuer))
        poller = asyncio.create_task(issuer.broadcaster.run())
        # uvicorn waits for open responses before the lifespan ends: a stop signal ends the
        # event streams first (and the lifespan's end, for servers that get there directly).
        undo = on_exit_signals(issuer.broadcaster.stop)
        try:
            yield {http.ISSUER_STATE: issuer}
        finally:
            undo()
            issuer.broadcaster.stop()
            for running in (task, poller):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            await issuer.tokens.refresh_tokens.aclose()
            await anyio.to_thread.run_sync(lambda: close_issuer(issuer))

    # Matched in order: the busiest endpoints first. /token is served ahead of the router by
    # TokenFastPath (issuer/endpoints/token.py), whatever the method.
    routes = [
        Route(JWKS_PATH, jwks, methods=["GET"]),
        Route(METADATA_PATH, metadata, methods=["GET"]),
        Route(OPENID_CONFIGURATION_PATH, metadata, methods=["GET"]),
        Route(AUTHORIZE_PATH, authorize, methods=["GET"]),  # GET implies HEAD
        Route(LOGIN_PATH, login, methods=["POST"]),
        Route(CONSENT_PATH, consent, methods=["POST"]),
        Route(USERINFO_PATH, userinfo, methods=_ANY_METHOD),
        Route(END_SESSION_PATH, end_session, methods=["GET", "POST"]),
        Route(STATIC_PATH + "/keyhouse.css", static, methods=["GET"]),
        Route(REVOCATION_PATH, revoke, methods=_ANY_METHOD),
        Route(INTROSPECTION_PATH, introspect, methods=_ANY_METHOD),
        Route("/admin/keys", admin_keys, methods=["GET"]),
        Route("/admin/keys/rotate", admin_rotate, methods=["POST"]),
        Route("/admin/keys/{kid}/revoke", admin_revoke, methods=["POST"]),
        Route("/admin/users/{username}/disable", admin_disable_user, methods=["POST"]),
        Route("/admin/users/{username}/enable", admin_enable_user, methods=["POST"]),
        Route(EVENTS_PATH, events, methods=["GET"]),
        Route(HEALTH_PATH, healthz, methods=["GET"]),  # GET implies HEAD
        Route(READINESS_PATH, readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TokenFastPath)],
        lifespan=lifespan,
        exception_handlers={
            KeyhouseError: http.handle_keyhouse_error,
            SQLAlchemyError: http.handle_database_error,
            HTTPException: http.handle_http_exception,
            Exception: http.handle_unexpected,
        },
    )
