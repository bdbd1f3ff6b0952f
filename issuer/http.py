"""HTTP glue shared by the issuer's endpoints: bounded body reads and the one error handler."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from issuer.forms import parse_form
from shared.errors import InvalidClient, KeyhouseError, RequestTooLarge

logger = logging.getLogger("keyhouse.issuer")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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


def error_response(exc: KeyhouseError, *, bearer_realm: str | None = None) -> Response:
    headers = {**NO_STORE, **exc.headers}
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="keyhouse"'
    elif bearer_realm is not None and exc.status_code in (401, 403):
        challenge = f'Bearer realm="{bearer_realm}"'
        if exc.error in {"invalid_token", "insufficient_scope"}:
            challenge += f', error="{exc.error}", error_description="{exc.description}"'
        headers["WWW-Authenticate"] = challenge
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


async def handle_keyhouse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyhouseError)
    realm = "issuer" if request.url.path.startswith("/admin/") else None
    return error_response(exc, bearer_realm=realm)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "invalid_request"}.get(exc.status_code, "invalid_request")
    headers = {**NO_STORE, **(exc.headers or {})}
    return JSONResponse(
        {"error": code, "error_description": str(exc.detail)},
        status_code=exc.status_code,
        headers=headers,
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged without the request: its body or headers may carry credentials.
    logger.error("unexpected error on %s %s: %r", request.method, request.url.path, type(exc))
    logger.debug("unexpected error", exc_info=exc)
    return JSONResponse(
        {"error": "server_error", "error_description": "internal error"},
        status_code=500,
        headers=NO_STORE,
    )
