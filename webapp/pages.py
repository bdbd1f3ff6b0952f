"""The web app's HTML pages: Jinja2 templates (``webapp/templates``, autoescaped) rendered with
the same security headers as the issuer's pages, and the one stylesheet they use.

Every page is sent with a ``Content-Security-Policy`` that loads nothing but this origin's
stylesheet and images, runs no script at all, allows no ``<base>`` and no framing, and lets
forms post only to this origin and the issuer's (the sign-out form's answer redirects to the
issuer's ``/logout``, and Chromium applies ``form-action`` to that redirect);
``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` (a
signed-in page must not come back from a cache, or the Back button, after sign-out), and
``Referrer-Policy: same-origin`` (nothing to other origins; the sign-out form is checked by its
``Origin``, which Chromium sends as ``null`` from a ``no-referrer`` page).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

_HERE = Path(__file__).parent
STYLESHEET = "webapp.css"
STYLESHEET_PATH = f"/static/{STYLESHEET}"
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_CSS = (_HERE / "static" / STYLESHEET).read_bytes()


def security_headers(issuer_origin: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self'; img-src 'self'; "
            f"form-action 'self' {issuer_origin}; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }


def render(
    name: str, context: Mapping[str, Any], *, issuer_origin: str, status: int = 200
) -> Response:
    html = _ENVIRONMENT.get_template(name).render(
        {"stylesheet": STYLESHEET_PATH, "user": None, "csrf_token": "", **context}
    )
    return HTMLResponse(html, status_code=status, headers=security_headers(issuer_origin))


async def stylesheet(request: Request) -> Response:
    """``GET /static/webapp.css`` (read once, at import)."""
    headers = {
        "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    }
    return Response(_CSS, media_type="text/css; charset=utf-8", headers=headers)
