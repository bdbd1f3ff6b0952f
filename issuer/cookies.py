"""The issuer's two cookies and the one way they are set: ``__Host-`` names with
``HttpOnly; Secure; SameSite=Lax; Path=/`` and no ``Domain``.

* ``__Host-keyhouse-session``: the sign-in session (``issuer/sessions.py`` keeps only its
  SHA-256). ``Max-Age`` is the session's absolute lifetime, so the browser drops it when the
  server would refuse it anyway.
* ``__Host-keyhouse-csrf``: the login and consent forms' double-submit value
  (``issuer/tickets.py``); a browser-session cookie.

Each flag answers a threat: ``HttpOnly`` (a script injected into a page cannot read the value),
``Secure`` (never sent over plain http, where anyone on the path reads it; browsers treat
``http://127.0.0.1`` and ``localhost`` as secure), ``SameSite=Lax`` (not sent with another
site's POSTs, images or frames: cross-site request forgery; still sent on the top-level GET
that brings the user back from a client to ``/authorize``), ``__Host-`` with ``Path=/`` and no
``Domain`` (a sibling subdomain cannot set or overwrite it: cookie tossing, session fixation).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from issuer.tickets import CSRF_COOKIE

SESSION_COOKIE = "__Host-keyhouse-session"
__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "clear_cookie", "read_cookie", "set_cookie"]
_FLAGS = "HttpOnly; Secure; SameSite=Lax; Path=/"
_MAX_VALUE = 512


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """Add ``Set-Cookie: name=value; HttpOnly; Secure; SameSite=Lax; Path=/[; Max-Age=N]``.

    ``value`` must be cookie-safe (the issuer's values are base64url)."""
    header = f"{name}={value}; {_FLAGS}"
    if max_age is not None:
        header += f"; Max-Age={max_age}"
    response.headers.append("Set-Cookie", header)


def clear_cookie(response: Response, name: str) -> None:
    """Tell the browser to drop the cookie ``name`` (same flags, so it names the same cookie)."""
    response.headers.append("Set-Cookie", f'{name}=""; {_FLAGS}; Max-Age=0')


def read_cookie(conn: HTTPConnection, name: str) -> str | None:
    """The cookie's value, or None when absent, empty or too long to be one of ours."""
    value = conn.cookies.get(name)
    if not value or len(value) > _MAX_VALUE:
        return None
    return value
