"""Signed tickets and CSRF tokens for the sign-in forms (HMAC-SHA256 under ``sign_in_key``).

A **ticket** carries a checked authorization request (``issuer/authorization.py``) from
``GET /authorize`` through the login and consent forms, so the issuer keeps no state for a
page the user may never submit. It is ``v1.<payload>.<mac>``: the payload is base64url JSON
with the ticket's purpose (``login``, ``consent``) and expiry; the MAC covers the payload
and is checked, in constant time, before the payload is even decoded. A ticket is not a secret
(it holds what the browser sent to ``/authorize``); it only must not be forged, altered, used
for another purpose or kept past its lifetime.

The **CSRF token** is a signed double submit (OWASP CSRF cheat sheet): the browser holds a
random value in the ``__Host-keyhouse-csrf`` cookie (``HttpOnly``, so no script reads it;
``__Host-``, so no sibling domain can set it), and the form carries ``HMAC(key, value)``. A
page on another origin can make the browser send the cookie but can neither read the cookie nor
compute its MAC. The endpoint also checks the request's ``Origin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

TICKET_TTL = 600  # seconds: the login or consent page must be answered within this
MAX_TICKET = 12_000  # characters; a ticket holds a bounded authorization request
CSRF_COOKIE = "__Host-keyhouse-csrf"
_VERSION = "v1"
_TICKET_DOMAIN = b"keyhouse ticket v1\x00"
_CSRF_DOMAIN = b"keyhouse csrf v1\x00"
_B64 = re.compile(r"[A-Za-z0-9_-]+")
# The cookie's value: 32 random bytes, base64url (43 characters).
_CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class InvalidTicket(Exception):
    """A ticket that is malformed, forged, altered, for another purpose, or expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tickets:
    """Makes and opens tickets and CSRF tokens under one key (the issuer's ``sign_in_key``)."""

    def __init__(self, key: bytes, *, ttl: int = TICKET_TTL) -> None:
        if len(key) < 32:
            raise ValueError("the sign-in key must be at least 32 bytes")
        self._key = key
        self.ttl = ttl

    def _mac(self, domain: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, domain + data, hashlib.sha256).digest()

    # -- tickets -------------------------------------------------------------------------------

    def seal(self, purpose: str, data: Mapping[str, Any], *, now: float) -> str:
        """A ticket for ``purpose`` holding ``data`` (JSON-serialisable), valid ``ttl`` s."""
        body = {"p": purpose, "exp": int(now) + self.ttl, "d": dict(data)}
        payload = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64encode(self._mac(_TICKET_DOMAIN, payload.encode("ascii")))
        return f"{_VERSION}.{payload}.{mac}"

    def open(self, purpose: str, ticket: str | None, *, now: float) -> dict[str, Any]:
        """The data sealed in ``ticket``, or :class:`InvalidTicket`."""
        if not ticket or len(ticket) > MAX_TICKET:
            raise InvalidTicket("missing or oversized ticket")
        parts = ticket.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise InvalidTicket("malformed ticket")
        _, payload, mac = parts
        try:
            presented = _b64decode(mac)
        except (ValueError, binascii.Error):
            raise InvalidTicket("malformed ticket") from None
        if not payload.isascii():
            raise InvalidTicket("malformed ticket")
        expected = self._mac(_TICKET_DOMAIN, payload.encode("ascii"))
        if not hmac.compare_digest(presented, expected):
            raise InvalidTicket("bad signature")
        try:
            body = json.loads(_b64decode(payload))
        except (ValueError, binascii.Error):  # signed by us: only another version does this
            raise InvalidTicket("unreadable ticket") from None
        if not isinstance(body, dict) or body.get("p") != purpose:
            raise InvalidTicket("ticket for another purpose")
        expires = body.get("exp")
        if not isinstance(expires, int) or isinstance(expires, bool) or now >= expires:
            raise InvalidTicket("expired ticket")
        data = body.get("d")
        if not isinstance(data, dict):
            raise InvalidTicket("unreadable ticket")
        return data

    # -- CSRF ----------------------------------------------------------------------------------

    @staticmethod
    def new_csrf_cookie() -> str:
        """A fresh value for the CSRF cookie: 256 random bits."""
        return secrets.token_urlsafe(32)

    @staticmethod
    def is_csrf_cookie(value: str | None) -> bool:
        return value is not None and _CSRF_VALUE.fullmatch(value) is not None

    def csrf_token(self, cookie_value: str) -> str:
        """The form's token for the browser holding ``cookie_value``."""
        return _b64encode(self._mac(_CSRF_DOMAIN, cookie_value.encode("ascii")))

    def csrf_matches(self, cookie_value: str | None, token: str | None) -> bool:
        """The form's ``token`` was made for this browser's cookie (constant-time compare)."""
        if not self.is_csrf_cookie(cookie_value) or not token or not token.isascii():
            return False
        assert cookie_value is not None
        expected = self.csrf_token(cookie_value)
        return hmac.compare_digest(expected.encode("ascii"), token.encode("ascii"))
