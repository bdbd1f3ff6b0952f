"""What the web app's endpoints share: the app's parts (from the lifespan), pages and error
pages, its session cookie, redirects."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.clock import Clock
from shared.jwks_client import JWKSClient
from webapp import pages
from webapp.issuer_client import IssuerClient
from webapp.resources import Resources
from webapp.sessions import Session, SessionStore
from webapp.settings import WebappSettings

logger = logging.getLogger("keyhouse.webapp")

COOKIE = "__Host-webapp-session"


@dataclass
class Webapp:
    settings: WebappSettings
    sessions: SessionStore
    issuer: IssuerClient
    resources: Resources
    jwks: JWKSClient
    clock: Clock


def webapp_of(request: Request) -> Webapp:
    webapp: Webapp = request.app.state.webapp
    return webapp


def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    webapp = webapp_of(request)
    return pages.render(name, context, issuer_origin=webapp.settings.issuer_origin, status=status)


def error_page(request: Request, title: str, description: str, status: int) -> Response:
    return page(request, "error.html", status, title=title, description=description)


def set_cookie(response: Response, value: str) -> None:
    # __Host-: Secure, Path=/, no Domain (the browser refuses it otherwise). HttpOnly: no script
    # reads it. SameSite=Lax: not sent on cross-site subresource requests or POSTs.
    response.set_cookie(COOKIE, value, path="/", secure=True, httponly=True, samesite="lax")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def session_of(request: Request) -> Session | None:
    return webapp_of(request).sessions.find(request.cookies.get(COOKIE))
