"""The drill's own subscription to the issuer's event stream (``GET /events``): when each
revocation's event appeared there, to tell the issuer's share of a refusal time from the
services'. The events are read, not verified (the drill only labels; the services verify)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from drill.client import describe
from shared.event_stream import EVENT_TYPE, SSEParser, StreamError
from shared.security_events import EVENTS_PATH, InvalidSecurityEvent, rule_from_claims


@dataclass
class StreamLog:
    """What the drill saw on the stream: its state and each event's arrival (epoch seconds),
    with the token claim and value it covers ("kid", KID; "sub", hashed sub; ...)."""

    state: str = "not connected"
    connected_at: float | None = None
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def first_seen(self, claim: str, value: str, since: float) -> float | None:
        """When the first event for ``claim`` = ``value`` arrived at or after ``since``."""
        return next(
            (at for at, c, v in self.events if at >= since and c == claim and v == value), None
        )


def _payload(compact: str) -> dict[str, Any] | None:
    try:
        part = compact.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, read without verification (the drill only labels); {} if unreadable."""
    return _payload(token) or {}


def record(log: StreamLog, data: str, at: float) -> None:
    """Note one ``set`` message's event (ignored when it cannot be read)."""
    claims = _payload(data)
    if claims is None:
        return
    try:
        rule = rule_from_claims(claims)
    except InvalidSecurityEvent:
        return
    log.events.append((at, rule.claim, rule.value))


async def watch(http: httpx.AsyncClient, issuer: str, log: StreamLog) -> None:
    """Read the stream until cancelled or it ends; the outcome goes in ``log.state``."""
    try:
        async with http.stream(
            "GET",
            issuer + EVENTS_PATH,
            headers={"Accept": "text/event-stream"},
            timeout=httpx.Timeout(10.0, read=None),
        ) as response:
            if response.status_code != 200:
                log.state = f"HTTP {response.status_code}"
                return
            log.state, log.connected_at = "connected", time.time()
            parser = SSEParser()
            async for chunk in response.aiter_bytes():
                now = time.time()
                for message in parser.feed(chunk):
                    if message.event == EVENT_TYPE:
                        record(log, message.data, now)
            log.state = "ended by the issuer"
    except (httpx.HTTPError, StreamError) as exc:
        log.state = "error: " + describe(exc) if not isinstance(exc, StreamError) else str(exc)
