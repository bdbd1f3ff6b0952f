"""``GET /events``: the security event stream (Server-Sent Events) the resource services
subscribe to (issue 17 §2; docs/revocation.md). Public like the JWKS: every event is a signed
SET and names no user in clear. The process's :class:`~issuer.events.broadcaster.Broadcaster`
does the work; this module turns it into a response that ends as soon as the client goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from issuer.events.sse import resume_after
from issuer.http import issuer_of

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # proxies that buffer by default (nginx) pass each event on
}


class EventStream(StreamingResponse):
    """A streamed body (no ``Content-Length``) whose producer is cancelled the moment the client
    disconnects (it listens for ``http.disconnect`` next to the stream, whatever the ASGI
    version), so an abandoned subscription leaves no task behind."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        super().__init__(body, status_code=200, headers=HEADERS)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                async for chunk in self._body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the client is gone
                pass
            finally:
                await self._body.aclose()  # type: ignore[attr-defined]
            group.cancel_scope.cancel()


async def events(request: Request) -> Response:
    issuer = issuer_of(request)
    after = resume_after(request.headers.get("last-event-id"), request.query_params.get("after"))
    broadcaster = issuer.broadcaster
    subscription = broadcaster.subscribe()  # 503 at the cap, before any byte is sent
    return EventStream(broadcaster.stream(subscription, after))
