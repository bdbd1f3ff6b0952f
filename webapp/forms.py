"""The web app's form posts (sign-out, adding an item): read strictly, and accepted only from a
page of its own origin carrying the session's CSRF token.

Two checks, each enough against a cross-site post on its own: the ``Origin`` header (or, when a
browser sends none, the origin of ``Referer``) must be the web app's, and the form's
``csrf_token`` must equal the one kept in the session (a random value only the web app's own
pages show; compared in constant time). ``SameSite=Lax`` already keeps the session cookie off
cross-site POSTs in browsers that honour it.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import ClientDisconnect, Request

from webapp.sessions import Session

MAX_FORM_BYTES = 4096
MAX_FIELDS = 8


def same_origin(request: Request, origin: str) -> bool:
    """``Origin`` (or, without one, the origin of ``Referer``) is ``origin``."""
    sent = request.headers.get("origin")
    if sent is None:
        referer = request.headers.get("referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        sent = f"{parts.scheme}://{parts.netloc}"
    return hmac.compare_digest(sent.encode("latin-1"), origin.encode("latin-1"))


def csrf_ok(form: dict[str, str], session: Session) -> bool:
    token = form.get("csrf_token", "")
    return hmac.compare_digest(token.encode(), session.csrf_token.encode())


async def read_form(request: Request) -> dict[str, str] | None:
    """An ``application/x-www-form-urlencoded`` body of at most ``MAX_FORM_BYTES`` bytes of
    UTF-8, each field once; None for anything else."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return None
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
    except ClientDisconnect:
        return None
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    form = dict(pairs)
    return form if len(form) == len(pairs) else None
