"""``POST /token`` as a bare ASGI app: the issuer's hot path (RFC 6749 §3.2, §5.1).

A client_credentials request is one RSA signature plus HTTP glue, and the glue is what a
benchmark of the endpoint against raw signing measures: on this machine kind every bit of
Python between two signatures runs with cold caches. Starlette's routing and request/response
wrapper (a ``Request``, two exception wrappers, ``JSONResponse`` building its headers) were
over a quarter of the instructions the app spent per request outside RSA. So
:class:`TokenFastPath` hands ``/token`` to :class:`TokenEndpoint` ahead of the router, and the
endpoint reads the container from the lifespan state and the three headers it needs straight
from the ASGI scope, the body from ``receive``, and answers with a prebuilt header list. Errors
go through the app's one renderer (:func:`issuer.http.error_response`) like everywhere else;
anything unexpected reaches Starlette's server-error middleware, outside this one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from issuer import http
from issuer.container import Issuer
from issuer.forms import parse_form
from issuer.token_service import UNKNOWN_ADDRESS
from shared.errors import NO_STORE, KeyhouseError, MethodNotAllowed
from shared.protocol import TOKEN_PATH
from shared.tokens import compact_json

_HEADERS = [
    (b"content-type", b"application/json"),
    *((name.lower().encode(), value.encode()) for name, value in NO_STORE.items()),
]


def _request_headers(
    scope: Scope,
) -> tuple[str | None, str | None, str | None, list[str] | None]:
    """Content-Type, Content-Length and Authorization (the first of each, like Starlette), and
    every ``DPoP`` value (RFC 9449 §4.3 refuses more than one: the token service decides), None
    when there is none. A request without DPoP pays one comparison a header for it."""
    content_type = content_length = authorization = None
    dpop: list[str] | None = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = content_type or value.decode("latin-1")
        elif name == b"content-length":
            content_length = content_length or value.decode("latin-1")
        elif name == b"authorization":
            authorization = authorization or value.decode("latin-1")
        elif name == b"dpop":
            if dpop is None:
                dpop = []
            dpop.append(value.decode("latin-1"))
    return content_type, content_length, authorization, dpop


class TokenEndpoint:
    """The ASGI app for ``/token``; raises :class:`KeyhouseError` for every refusal."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        issuer: Issuer = scope["state"][http.ISSUER_STATE]
        if scope["method"] != "POST":
            raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
        content_type, content_length, authorization, dpop = _request_headers(scope)
        client = scope.get("client")
        try:
            body = await http.read_body(receive, content_length, issuer.settings.max_body_bytes)
            form = parse_form(body, content_type, scope["query_string"].decode("latin-1"))
            result = await issuer.tokens.token(
                form, authorization, client[0] if client else UNKNOWN_ADDRESS, dpop
            )
        except SQLAlchemyError as exc:
            error = issuer.outage.error_for(exc)  # a database outage: 503, logged once
            if error is None:
                raise  # anything else is unexpected: Starlette's 500
            issuer.metrics.token_error(error.error)
            raise error from None
        except KeyhouseError as exc:
            issuer.metrics.token_error(exc.error)
            raise
        issuer.metrics.token_issued(result.grant_type)
        payload = compact_json(result.body).encode()
        headers: list[Any] = [*_HEADERS, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class TokenFastPath:
    """Starlette middleware: every request for ``/token`` goes to :class:`TokenEndpoint`.

    It sits inside Starlette's server-error middleware (unexpected errors still become the JSON
    500) and outside the router; refusals are serialised by the same renderer as every other
    endpoint's. Being the outermost of the app's own layers, it is also where a client that
    hangs up mid-request (``ClientDisconnect``, from any endpoint) ends quietly.
    """

    PATH = TOKEN_PATH

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.endpoint = TokenEndpoint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] != "http" or scope["path"] != self.PATH:
                await self.app(scope, receive, send)
                return
            try:
                await self.endpoint(scope, receive, send)
            except KeyhouseError as exc:
                await http.error_response(exc)(scope, receive, send)
        except ClientDisconnect:
            # The client hung up before its request was whole (a body shorter than its
            # Content-Length, then a closed socket), on any path: there is no one to answer
            # and nothing went wrong here, so no 500, no traceback, one debug line.
            http.client_disconnected(scope)
