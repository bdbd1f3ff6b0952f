"""The resource service's Starlette app: ``/whoami``, ``/NAME``, ``/healthz`` (alive) and
``/readyz`` (holds usable keys).

The lifespan also runs the subscription to the issuer's revocation events
(``shared/event_stream.py``, RESOURCE_EVENTS): they fill the deny-list every request is checked
against. Readiness does not depend on it: while it is down, verification goes on as before it
existed (the JWKS poll still bounds a key revocation)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from resource_service.auth import (
    BearerAuthBackend,
    FormCarrierMiddleware,
    KeyhouseAuthError,
    require_scope,
)
from resource_service.items import MAX_TITLE, ItemStore
from resource_service.metrics import ResourceMetrics
from resource_service.settings import ResourceSettings
from shared.clock import Clock, system_clock
from shared.deny_list import DenyList
from shared.dpop import DPoPSettings, DPoPVerifier
from shared.dpop_replay import ReplayCache
from shared.errors import (
    GENERIC_DESCRIPTION,
    InvalidRequest,
    KeyhouseError,
    RequestTooLarge,
    ServerError,
    error_for_status,
    log_unexpected,
    render_error,
)
from shared.event_stream import DISABLED, EventSubscriber
from shared.event_verification import EventVerifier
from shared.jwks_client import JWKSClient
from shared.jws import strict_json
from shared.outgoing import outgoing_client
from shared.protocol import HEALTH_PATH, READINESS_PATH
from shared.revocation_events import RevocationEvents
from shared.token_cache import TokenCache
from shared.tokens import TokenVerifier
from shared.verification import BearerAuthenticator, dpop_challenges

logger = logging.getLogger("keyhouse.resource")
MAX_BODY = 16_384


@dataclass
class Resource:
    settings: ResourceSettings
    jwks: JWKSClient
    authenticator: BearerAuthenticator
    items: ItemStore
    metrics: ResourceMetrics
    events: EventSubscriber | None  # None: RESOURCE_EVENTS=0

    def events_state(self) -> dict[str, Any]:
        if self.events is None:
            return {"state": DISABLED}
        return self.events.state()


def _resource(request: HTTPConnection) -> Resource:
    resource: Resource = request.app.state.resource
    return resource


# -- errors: every answer goes through shared.errors.render_error ------------------------------


def error_response(exc: KeyhouseError, realm: str | None) -> Response:
    """RFC 6750 §3: JSON body plus the Bearer ``WWW-Authenticate`` challenge of this realm."""
    status, headers, body = render_error(exc, bearer_realm=realm, log=logger)
    return Response(body, status_code=status, headers=headers)


def answer_error(exc: KeyhouseError, conn: HTTPConnection) -> Response:
    """:func:`error_response` with this service's challenges for the request: Bearer as
    always, DPoP's (RFC 9449 §7.1) where :func:`shared.verification.dpop_challenges` says."""
    resource = _resource(conn)
    realm = resource.settings.name
    authorization = conn.headers.get("authorization")
    scheme = authorization.partition(" ")[0].lower() if authorization is not None else None
    challenges = dpop_challenges(
        exc,
        realm=realm,
        scheme=scheme,
        accepts_bearer=resource.authenticator.accepts_bearer,
        dpop_algorithms=resource.settings.dpop_algorithms,
    )
    if challenges is None:  # a Bearer request: the Bearer challenge, as always
        return error_response(exc, realm)
    response = error_response(exc, None)
    for challenge in challenges:  # one field each (RFC 9110 §11.6.1)
        response.raw_headers.append((b"www-authenticate", challenge.encode("latin-1")))
    return response


class QuietDisconnect:
    """The outermost of the app's own layers: a client that hangs up before its request is whole
    (a body shorter than its ``Content-Length``, then a closed socket) ends here with one debug
    line. There is no one to answer and nothing went wrong, so no 500 handler and no traceback
    from uvicorn (anyone could otherwise fill the log, one slow body at a time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            logger.debug("client disconnected during %s %s", scope.get("method"), scope.get("path"))


async def handle_keyhouse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyhouseError)
    return answer_error(exc, request)


def on_auth_error(conn: HTTPConnection, exc: Exception) -> Response:
    assert isinstance(exc, KeyhouseAuthError)
    return answer_error(exc.error, conn)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = error_for_status(exc.status_code, str(exc.detail), exc.headers)
    return answer_error(error, request)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged without the request: its body or headers may carry credentials.
    log_unexpected(logger, request.method, request.url.path, exc)
    return error_response(ServerError(GENERIC_DESCRIPTION), None)


# -- endpoints ----------------------------------------------------------------------------------


async def whoami(request: Request) -> Response:
    access = require_scope(request, None)
    return JSONResponse({"claims": dict(access.claims)}, headers={"Cache-Control": "no-store"})


async def list_items(request: Request) -> Response:
    resource = _resource(request)
    access = require_scope(request, f"{resource.settings.name}:read")
    items = resource.items.list(access.subject)
    return JSONResponse({"items": items}, headers={"Cache-Control": "no-store"})


async def create_item(request: Request) -> Response:
    resource = _resource(request)
    access = require_scope(request, f"{resource.settings.name}:write")
    title = await _read_title(request)
    item = resource.items.create(access.subject, title)
    return JSONResponse(item, status_code=201, headers={"Cache-Control": "no-store"})


async def _read_title(request: Request) -> str:
    check_json_media(request.headers.get("content-type"))
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise RequestTooLarge("the request body is too large")
    return parse_title(body)


# Descriptions travel in a WWW-Authenticate quoted string too, where '"' is replaced by '?'
# (shared.errors): this one names the member without double quotes.
TITLE_REQUIRED = (
    "the body must be a JSON object whose 'title' is a non-blank string of at most "
    f"{MAX_TITLE} characters"
)


def check_json_media(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise InvalidRequest("the body must be application/json")


def parse_title(body: bytes) -> str:
    """The ``title`` of a ``POST /NAME`` body: strict UTF-8 JSON (no duplicate members, no lone
    surrogates, bounded nesting: :func:`shared.jws.strict_json`) holding an object whose
    ``title`` is a non-blank string of at most ``MAX_TITLE`` characters. InvalidRequest otherwise.
    """
    try:
        data = strict_json(body)
    except ValueError:
        raise InvalidRequest("the body is not valid JSON") from None
    title = data.get("title") if isinstance(data, dict) else None
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise InvalidRequest(TITLE_REQUIRED)
    return title


async def healthz(request: Request) -> Response:
    resource = _resource(request)
    state = resource.jwks.state()
    body: dict[str, Any] = {
        "status": "ok" if state["usable"] else "waiting_for_keys",
        "name": resource.settings.name,
        "audience": resource.settings.audience,
        "issuer": resource.settings.issuer,
        "jwks": state,
        "events": resource.events_state(),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    """Ready once it holds usable verification keys: 200 ``{"status": "ready"}``; until then
    (never reached the issuer, or the last good set went stale) 503 with the reason."""
    state = _resource(request).jwks.state()
    if state["usable"]:
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
    return JSONResponse(
        {"status": "unavailable", "reason": _not_ready_reason(state)},
        status_code=503,
        headers={"Cache-Control": "no-store"},
    )


def _not_ready_reason(state: dict[str, Any]) -> str:
    last = state["last_fetch"]
    if last is None:
        return "no verification keys yet: the issuer's keys have not been fetched"
    if last["result"] == "error":
        return f"no usable verification keys: the last fetch failed: {last['detail']}"
    return "no usable verification keys: the last good key set is too old"


async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(_resource(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


# -- the app ------------------------------------------------------------------------------------


def _http_client(
    settings: ResourceSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    return outgoing_client(
        transport=transport,
        timeout=settings.jwks.fetch_timeout,
        ca_file=settings.ca_file,
        user_agent="keyhouse-resource-service",
    )


def _subscriber(
    settings: ResourceSettings,
    http: httpx.AsyncClient,
    handler: RevocationEvents,
    deny: DenyList,
    clock: Clock,
) -> EventSubscriber:
    return EventSubscriber(
        settings.events_url,
        http,
        handler,
        connect_timeout=settings.jwks.fetch_timeout,
        idle_timeout=settings.events_idle_timeout,
        retry_backoff=settings.events_retry_backoff,
        max_retry_backoff=settings.events_max_retry_backoff,
        clock=clock,
        tick=deny.purge,
    )


def create_app(
    settings: ResourceSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = system_clock,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = _http_client(settings, transport)
        jwks = JWKSClient(settings.jwks, http, clock=clock)
        verifier = TokenVerifier(
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.token_leeway,
            max_token_bytes=settings.max_token_bytes,
            clock=clock,
        )
        cache = TokenCache(settings.token_cache_size, leeway=settings.token_leeway, clock=clock)
        # One DPoP verifier, and so one jti replay cache, per process (shared.dpop_replay).
        dpop_settings = DPoPSettings(algorithms=settings.dpop_algorithms)
        replay = ReplayCache(
            lifetime=dpop_settings.replay_lifetime,
            max_entries=settings.dpop_replay_cache_size,
            clock=clock,
        )
        dpop = DPoPVerifier(dpop_settings, clock=clock, replay_cache=replay)
        deny = DenyList(
            max_entries=settings.deny_list_size, leeway=settings.token_leeway, clock=clock
        )
        authenticator = BearerAuthenticator(
            verifier,
            jwks,
            cache=cache,
            dpop=dpop,
            require_dpop=settings.require_dpop,
            deny=deny,
        )
        handler = RevocationEvents(EventVerifier(verifier, jwks), deny, jwks)
        events = _subscriber(settings, http, handler, deny, clock) if settings.events else None
        resource = Resource(
            settings=settings,
            jwks=jwks,
            authenticator=authenticator,
            items=ItemStore(settings.database_path),
            metrics=ResourceMetrics(jwks, authenticator, events),
            events=events,
        )
        app.state.resource = resource
        await jwks.refresh()  # warm the cache; a failure here is recorded, not fatal
        tasks = [asyncio.create_task(jwks.run())]
        if events is not None:
            tasks.append(asyncio.create_task(events.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await handler.aclose()
            await jwks.aclose()
            await http.aclose()
            resource.items.close()

    name = settings.name
    routes = [
        Route("/whoami", whoami, methods=["GET"]),
        Route(f"/{name}", list_items, methods=["GET"]),
        Route(f"/{name}", create_item, methods=["POST"]),
        Route(HEALTH_PATH, healthz, methods=["GET"]),  # GET implies HEAD
        Route(READINESS_PATH, readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(QuietDisconnect),
            Middleware(FormCarrierMiddleware),
            Middleware(
                AuthenticationMiddleware, backend=BearerAuthBackend(), on_error=on_auth_error
            ),
        ],
        exception_handlers={
            KeyhouseError: handle_keyhouse_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
    )
