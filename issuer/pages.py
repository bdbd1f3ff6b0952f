"""The issuer's HTML pages: Jinja2 templates (``issuer/templates``, autoescaped) rendered with
the security headers every page carries, and the one stylesheet they use.

Every page is sent with:

* ``Content-Security-Policy``: nothing loads but this origin's stylesheet and images; no script
  at all, no inline style, no ``<base>``, no framing (``frame-ancestors 'none'``, clickjacking);
  forms post only to this origin and to the origins in ``form_action`` (Chromium applies
  ``form-action`` to the redirect that answers a form post, so a page whose form ends in a
  redirect to a client's ``redirect_uri`` names that URI's origin);
* ``X-Frame-Options: DENY`` (framing, for browsers without ``frame-ancestors``),
  ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` (a login or consent page in a
  shared cache or the back-forward cache would replay its ticket and CSRF token);
* ``Referrer-Policy: no-referrer`` (no ``Referer`` leaves any page, not even to the issuer).
  Browsers then send ``Origin: null`` on the page's own form posts (Chromium, measured; the
  Fetch standard says so); issuer/endpoints/authorize.py accepts that only with
  ``Sec-Fetch-Site: same-origin``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

_HERE = Path(__file__).parent
STYLESHEET = "keyhouse.css"
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # every template, whatever its name ends with
    undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
_CSS = (_HERE / "static" / STYLESHEET).read_bytes()

NO_REFERRER = "no-referrer"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL (a CSP source expression), or None
    for anything that is not one or would not be a plain source expression."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return None
    if any(c in host for c in " ;,'\"") or not host.isascii():
        return None
    shown = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{shown}" + (f":{port}" if port and port != default else "")


def content_security_policy(form_action: Iterable[str] = ()) -> str:
    origins = [o for o in dict.fromkeys(origin_of(url) for url in form_action) if o]
    targets = " ".join(["'self'", *origins])
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )


def security_headers(*, form_action: Iterable[str] = ()) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(form_action),
        "Referrer-Policy": NO_REFERRER,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }


def render(
    name: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    form_action: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The template ``name`` rendered with ``context``, as an HTML response with the headers
    above (plus ``headers``, e.g. ``Retry-After``)."""
    html = _ENVIRONMENT.get_template(name).render(
        {"stylesheet": f"/static/{STYLESHEET}", **context}
    )
    all_headers = {
        **security_headers(form_action=form_action),
        **(headers or {}),
    }
    return HTMLResponse(html, status_code=status, headers=all_headers)


def error_page(
    title: str, description: str, *, status: int = 400, headers: Mapping[str, str] | None = None
) -> Response:
    """The error page: what went wrong, never a link or redirect to the client."""
    context = {"title": title, "description": description}
    return render("error.html", context, status=status, headers=headers)


async def static(request: Request) -> Response:
    """``GET /static/keyhouse.css``: the pages' one stylesheet (read once, at import)."""
    headers = {
        "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    }
    return Response(_CSS, media_type="text/css; charset=utf-8", headers=headers)
