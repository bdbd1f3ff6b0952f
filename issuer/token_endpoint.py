"""``POST /token`` as a bare ASGI app: the issuer's hot path (RFC 6749 §3.2, §5.1).

A client_credentials request is one RSA signature plus HTTP glue, and the glue is what a
benchmark of the endpoint against raw signing measures. Starlette's request/response wrapper
(a ``Request``, a second exception wrapper, ``JSONResponse`` building its headers) was about a
seventh of the instructions the app spent per request outside RSA. So this endpoint reads the
three headers it needs straight from the ASGI scope, the body from ``receive``, and answers
with a prebuilt header list. Errors are raised like everywhere else and serialised by the app's
one handler (:func:`issuer.http.handle_keyhouse_error`); Starlette still does the routing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from issuer import http
from issuer.forms import parse_form
from shared.errors import KeyhouseError, MethodNotAllowed

if TYPE_CHECKING:
    from issuer.app import Issuer

_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_JSON = json.JSONEncoder(separators=(",", ":"))


def _request_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Content-Type, Content-Length and Authorization (the first of each, like Starlette)."""
    content_type = content_length = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = content_type or value.decode("latin-1")
        elif name == b"content-length":
            content_length = content_length or value.decode("latin-1")
        elif name == b"authorization":
            authorization = authorization or value.decode("latin-1")
    return content_type, content_length, authorization


class TokenEndpoint:
    """The ASGI app Starlette's router calls for ``/token``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        issuer: Issuer = scope["app"].state.issuer
        if scope["method"] != "POST":
            raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
        content_type, content_length, authorization = _request_headers(scope)
        client = scope.get("client")
        try:
            body = await http.read_body(receive, content_length, issuer.settings.max_body_bytes)
            form = parse_form(body, content_type, scope["query_string"].decode("latin-1"))
            result = await issuer.tokens.token(
                form, authorization, client[0] if client else "unknown"
            )
        except KeyhouseError as exc:
            issuer.metrics.token_error(exc.error)
            raise
        issuer.metrics.token_issued(result.grant_type)
        payload = _JSON.encode(result.body).encode()
        headers: list[Any] = [*_HEADERS, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
