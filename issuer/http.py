"""HTTP glue shared by the issuer's endpoints: the container from the lifespan state, the peer's
address, bounded body reads, and the app's error handlers (over :func:`shared.errors.render_error`),
including the one that turns a database outage into 503 ``temporarily_unavailable``.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from issuer.container import Issuer
from issuer.forms import parse_form
from issuer.token_service import UNKNOWN_ADDRESS
from shared.errors import (
    GENERIC_DESCRIPTION,
    KeyhouseError,
    RequestTooLarge,
    ServerError,
    error_for_status,
    log_unexpected,
    render_error,
)

logger = logging.getLogger("keyhouse.issuer")

# The key of the container in the lifespan state (``scope["state"]``), set by issuer/app.py.
ISSUER_STATE = "issuer"
# The admin API is a bearer-protected resource: its refusals carry RFC 6750 challenges.
ADMIN_PREFIX = "/admin/"
ADMIN_REALM = "issuer"


def issuer_of(conn: HTTPConnection) -> Issuer:
    """The container the app's lifespan built (read from the request's lifespan state)."""
    issuer: Issuer = conn.scope["state"][ISSUER_STATE]
    return issuer


def client_address(conn: HTTPConnection) -> str:
    """The peer address (uvicorn applies X-Forwarded-For only from --forwarded-allow-ips)."""
    return conn.client.host if conn.client else UNKNOWN_ADDRESS


async def read_body(receive: Receive, declared_length: str | None, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 as soon as the declared or actual size exceeds it.

    Straight from the ASGI ``receive`` channel: a token request's body is one small message.
    A client that hangs up first raises ``ClientDisconnect`` (see :func:`client_disconnected`).
    """
    if declared_length is not None and (
        not declared_length.isdigit() or int(declared_length) > limit
    ):
        raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
        if not message.get("more_body", False):
            return body


def client_disconnected(scope: Scope) -> None:
    """A client hung up before its request was read whole: not an error, nothing to send."""
    logger.debug("client disconnected during %s %s", scope.get("method"), scope.get("path"))


async def read_form(request: Request, limit: int) -> dict[str, str]:
    body = await read_body(request.receive, request.headers.get("content-length"), limit)
    # The raw query string, not request.url: only the parameter names are looked at.
    query = request.scope.get("query_string", b"").decode("latin-1")
    return parse_form(body, request.headers.get("content-type"), query)


# -- errors: every answer goes through shared.errors.render_error -----------------------------


def error_response(exc: KeyhouseError, *, bearer_realm: str | None = None) -> Response:
    status, headers, body = render_error(exc, bearer_realm=bearer_realm, log=logger)
    return Response(body, status_code=status, headers=headers)


def _realm(path: str) -> str | None:
    return ADMIN_REALM if path.startswith(ADMIN_PREFIX) else None


async def handle_keyhouse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyhouseError)
    return error_response(exc, bearer_realm=_realm(request.url.path))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = error_for_status(exc.status_code, str(exc.detail), exc.headers)
    return error_response(error, bearer_realm=_realm(request.url.path))


async def handle_database_error(request: Request, exc: Exception) -> Response:
    """A database outage is 503 ``temporarily_unavailable`` with ``Retry-After`` (logged once
    per outage by ``issuer.outage``, no traceback); any other database error is unexpected."""
    assert isinstance(exc, SQLAlchemyError)
    error = issuer_of(request).outage.error_for(exc)
    if error is None:
        raise exc  # to handle_unexpected: a 500, as before
    return error_response(error, bearer_realm=_realm(request.url.path))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged without the request: its body or headers may carry credentials.
    log_unexpected(logger, request.method, request.url.path, exc)
    return error_response(ServerError(GENERIC_DESCRIPTION))
