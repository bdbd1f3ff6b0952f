"""``POST /revoke``: RFC 7009 token revocation, for an authenticated client: a refresh token ends
its family; an access token of the client is revoked at the issuer and at the resource services
(a security event, issuer/events/)."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from issuer import audit
from issuer.http import client_address, issuer_of, read_form
from shared.errors import NO_STORE, MethodNotAllowed


async def revoke(request: Request) -> Response:
    issuer = issuer_of(request)
    if request.method != "POST":
        raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
    form = await read_form(request, issuer.settings.max_body_bytes)
    address = client_address(request)
    client = await issuer.tokens.authenticate_request(
        form, request.headers.get("authorization"), address
    )
    revoked = await anyio.to_thread.run_sync(lambda: issuer.introspector.revoke(form, client))
    if revoked == "refresh":
        await anyio.to_thread.run_sync(
            lambda: issuer.tokens.audit.record(
                audit.REFRESH_REVOKED,
                client_id=client.client_id,
                address=address,
                detail="refresh-token family ended at the revocation endpoint",
            )
        )
    return Response(status_code=200, headers=NO_STORE)
