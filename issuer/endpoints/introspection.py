"""``POST /introspect``: RFC 7662 token introspection, for an authenticated client."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import client_address, issuer_of, read_form
from shared.errors import NO_STORE, MethodNotAllowed


async def introspect(request: Request) -> Response:
    issuer = issuer_of(request)
    if request.method != "POST":
        raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
    form = await read_form(request, issuer.settings.max_body_bytes)
    client = await issuer.tokens.authenticate_request(
        form, request.headers.get("authorization"), client_address(request)
    )
    body = await anyio.to_thread.run_sync(lambda: issuer.introspector.introspect(form, client))
    return JSONResponse(body, headers=NO_STORE)
