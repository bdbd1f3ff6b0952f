"""The drill's reading of the issuer's event stream: which event arrived when."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

from drill.stream import StreamLog, claims_of, record, watch
from shared.security_events import key_revoked, subject_hash, user_disabled

ISSUER = "http://issuer.test"


def _compact(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'secevent+jwt'})}.{part(claims)}.c2ln"


def test_record_notes_the_claim_and_value_each_event_covers() -> None:
    log = StreamLog()
    record(log, _compact(user_disabled(issuer=ISSUER, now=10, sub="user-1", exp=99)), 5.0)
    record(log, _compact(key_revoked(issuer=ISSUER, now=10, kid="k2", exp=99)), 6.0)
    record(log, "not a token", 7.0)
    record(log, _compact({"iss": ISSUER}), 8.0)  # not a security event: ignored
    assert log.events == [(5.0, "sub", subject_hash("user-1")), (6.0, "kid", "k2")]
    assert log.first_seen("kid", "k2", 5.5) == 6.0
    assert log.first_seen("kid", "k2", 6.5) is None  # arrived before the action
    assert log.first_seen("sub", subject_hash("user-2"), 0) is None


def test_claims_of_reads_a_payload_without_verifying() -> None:
    assert claims_of(_compact({"sub": "u"})) == {"sub": "u"}
    assert claims_of("garbage") == {}


def _run(handler: Any) -> StreamLog:
    log = StreamLog()

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            await watch(http, ISSUER, log)

    asyncio.run(go())
    return log


def test_watch_reads_set_messages_until_the_stream_ends() -> None:
    event = _compact(key_revoked(issuer=ISSUER, now=10, kid="k9", exp=99))

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/events"
        body = f": keepalive\n\nid: 1\nevent: set\ndata: {event}\n\nevent: other\ndata: x\n\n"
        return httpx.Response(200, content=body.encode())

    log = _run(handler)
    assert log.state == "ended by the issuer"
    assert log.connected_at is not None
    assert [(claim, value) for _, claim, value in log.events] == [("kid", "k9")]


def test_watch_without_a_stream_says_why() -> None:
    assert _run(lambda request: httpx.Response(404)).state == "HTTP 404"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    assert _run(refuse).state == "error: ConnectError: connection refused"
