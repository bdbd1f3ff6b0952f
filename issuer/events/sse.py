"""Server-Sent Events framing for ``GET /events`` (HTML Living Standard §9.2): one message per
security event, comment lines as keep-alives, and the resume position a client sends back."""

from __future__ import annotations

from shared.errors import InvalidRequest

KEEPALIVE = b": keepalive\n\n"
MAX_SEQ = 2**63 - 1
_MAX_DIGITS = 19


def message(seq: int, token: str) -> bytes:
    """``id: <seq>``, ``event: set``, ``data: <the compact SET>``, a blank line. A compact JWS is
    base64url and dots: no line break can get into ``data``."""
    return b"id: %d\nevent: set\ndata: %s\n\n" % (seq, token.encode("ascii"))


def resume_after(last_event_id: str | None, after: str | None) -> int | None:
    """The ``seq`` a client has seen: ``Last-Event-ID`` (what a reconnecting EventSource sends)
    or else the ``after`` query parameter; None when neither is given. Anything but a decimal
    number up to 2**63-1 is ``invalid_request``."""
    raw, name = (last_event_id, "Last-Event-ID") if last_event_id is not None else (after, "after")
    if raw is None:
        return None
    text = raw.strip()
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise InvalidRequest(f"{name} must be an event id (a decimal number)")
    value = int(text)
    if value > MAX_SEQ:
        raise InvalidRequest(f"{name} must be an event id (a decimal number)")
    return value
