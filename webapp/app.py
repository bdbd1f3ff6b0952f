"""The web app's Starlette app: a backend-for-frontend that signs people in through the issuer.

``GET /`` lists the signed-in person's photos and contacts (or offers "Sign in") with a form
adding one to each (``POST /items/{service}``, CSRF token and ``Origin`` checked); signing in
and out is ``webapp/signin.py``. Tokens never leave the server: the browser holds only
``__Host-webapp-session``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.clock import Clock, system_clock
from shared.errors import log_unexpected
from shared.jwks_client import JWKSClient
from shared.jwks_settings import JWKSClientSettings
from shared.outgoing import outgoing_client
from shared.protocol import HEALTH_PATH, JWKS_PATH, READINESS_PATH
from webapp import pages
from webapp.forms import csrf_ok, read_form, same_origin
from webapp.issuer_client import DPoPSigner, IssuerClient, IssuerRefused, IssuerUnavailable
from webapp.resources import SERVICES, Listing, Resources, SignInEnded
from webapp.sessions import SessionStore
from webapp.settings import CALLBACK_PATH, SIGNED_OUT_PATH, WebappSettings
from webapp.signin import callback, login, logout, signed_out
from webapp.web import (
    COOKIE,
    Webapp,
    clear_cookie,
    error_page,
    logger,
    page,
    redirect,
    session_of,
    webapp_of,
)


def _renewal_problem(service: str, exc: IssuerUnavailable | IssuerRefused) -> str:
    """What the page says when a token for ``service`` could not be had."""
    if isinstance(exc, IssuerRefused):
        logger.warning("the issuer refused a %s token: %s", service, exc.error)
        return f"the issuer refused access to {service} ({exc.error})"
    logger.warning("could not renew the %s token: %s", service, exc)
    return "the issuer could not be reached to renew access"


async def home(request: Request) -> Response:
    webapp = webapp_of(request)
    session = session_of(request)
    if session is None or session.user is None:
        response = page(request, "signed_out.html", heading="Sign in", notice=None)
        if session is None and COOKIE in request.cookies:
            clear_cookie(response)
        return response
    user_sub = session.user.subject
    results = await asyncio.gather(
        *(webapp.resources.list(session, service) for service in SERVICES),
        return_exceptions=True,
    )
    listings: list[Listing] = []
    for service, result in zip(SERVICES, results, strict=True):
        if isinstance(result, SignInEnded):
            webapp.sessions.end(session)
            logger.info("the sign-in of %s has ended: its refresh token was refused", user_sub)
            response = page(
                request,
                "signed_out.html",
                heading="Sign in",
                notice="Your sign-in has ended. Sign in again.",
            )
            clear_cookie(response)
            return response
        if isinstance(result, IssuerUnavailable | IssuerRefused):
            result = Listing(service, problem=_renewal_problem(service, result))
        elif isinstance(result, BaseException):
            raise result
        listings.append(result)
    user = session.user
    notice, session.notice = session.notice, None
    return page(
        request,
        "home.html",
        notice=notice,
        listings=listings,
        user=user.display_name if user else None,
        csrf_token=session.csrf_token,
    )


async def add_item(request: Request) -> Response:
    """``POST /items/{service}``: a form of the page (this origin, the session's CSRF token)
    adding an item; back to the page, which says what went wrong if anything did."""
    webapp = webapp_of(request)
    service = request.path_params["service"]
    if service not in SERVICES:
        return error_page(request, "Not found", "There is nothing to see here.", 404)
    if not same_origin(request, webapp.settings.origin):
        return error_page(request, "Refused", "The form did not come from this site.", 403)
    form = await read_form(request)
    if form is None:
        return error_page(request, "Refused", "The form could not be read.", 400)
    session = session_of(request)
    if session is None or session.user is None:
        return redirect("/")
    if not csrf_ok(form, session):
        return error_page(request, "Refused", "The form has expired. Try again.", 403)
    title = form.get("title", "").strip()
    try:
        problem = await webapp.resources.add(session, service, title)
    except SignInEnded:
        return redirect("/")  # the page says the sign-in has ended
    except (IssuerUnavailable, IssuerRefused) as exc:
        problem = _renewal_problem(service, exc)
    session.notice = problem
    return redirect("/")


# -- operations -----------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    webapp = webapp_of(request)
    body = {
        "status": "ok",
        "issuer": webapp.settings.issuer,
        "sessions": len(webapp.sessions),
        "signed_in": webapp.sessions.signed_in_count,
        "jwks": webapp.jwks.state(),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    """Ready once it holds the issuer's keys (it needs them to check an ID token)."""
    if webapp_of(request).jwks.state()["usable"]:
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
    return JSONResponse(
        {"status": "unavailable", "reason": "the issuer's keys have not been fetched"},
        status_code=503,
        headers={"Cache-Control": "no-store"},
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "Bad request")
    return error_page(request, title, "There is nothing to see here.", exc.status_code)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log_unexpected(logger, request.method, request.url.path, exc)
    return error_page(request, "Something went wrong", "Try again in a moment.", 500)


# -- the app --------------------------------------------------------------------------------


def _http_client(
    settings: WebappSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    return outgoing_client(
        transport=transport,
        timeout=settings.http_timeout,
        ca_file=settings.ca_file,
        user_agent="keyhouse-webapp",
    )


def create_app(
    settings: WebappSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = system_clock,
) -> Starlette:
    """The app; ``transport`` (httpx) carries every call to the issuer and the services."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = _http_client(settings, transport)
        jwks = JWKSClient(
            JWKSClientSettings(
                issuer=settings.issuer,
                jwks_url=settings.issuer_url + JWKS_PATH,
                allow_http=settings.allow_http,
                fetch_timeout=settings.http_timeout,
            ),
            http,
            clock=clock,
        )
        issuer = IssuerClient(settings, http, jwks, dpop=DPoPSigner(clock=clock), clock=clock)
        urls = {"photos": settings.photos_url, "contacts": settings.contacts_url}
        app.state.webapp = Webapp(
            settings=settings,
            sessions=SessionStore(
                max_sessions=settings.max_sessions,
                idle_ttl=settings.session_idle_ttl,
                ttl=settings.session_ttl,
                login_ttl=settings.login_ttl,
                clock=clock,
            ),
            issuer=issuer,
            resources=Resources(issuer, http, urls, clock=clock),
            jwks=jwks,
            clock=clock,
        )
        await jwks.refresh()  # warm the cache; a failure is recorded, not fatal
        task = asyncio.create_task(jwks.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await jwks.aclose()
            await http.aclose()

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/login", login, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/items/{service}", add_item, methods=["POST"]),
        Route(SIGNED_OUT_PATH, signed_out, methods=["GET"]),
        Route(pages.STYLESHEET_PATH, pages.stylesheet, methods=["GET"]),
        Route(HEALTH_PATH, healthz, methods=["GET"]),
        Route(READINESS_PATH, readyz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: handle_http_exception, Exception: handle_unexpected},
    )
