"""The web app's Starlette app: a backend-for-frontend that signs people in through the issuer.

``GET /`` lists the signed-in person's photos and contacts (or offers "Sign in") with a form
adding one to each (``POST /items/{service}``, CSRF token and ``Origin`` checked); ``GET /login``
starts the authorization code flow (PKCE S256, state, nonce) and sends the browser to the
issuer's ``/authorize``; ``GET /callback`` takes the code back, redeems it on the back channel,
checks the ID token and starts a session; ``POST /logout`` (CSRF token and ``Origin`` checked)
ends it, revokes its refresh token and sends the browser to the issuer's ``/logout``;
``GET /signed-out`` is where the issuer sends it back. Tokens never leave the server: the
browser holds only ``__Host-webapp-session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shared.clock import Clock, system_clock
from shared.errors import KeysUnavailable, log_unexpected
from shared.jwks_client import JWKSClient
from shared.jwks_settings import JWKSClientSettings
from shared.protocol import HEALTH_PATH, JWKS_PATH, READINESS_PATH
from webapp import pages
from webapp.forms import csrf_ok, read_form, same_origin
from webapp.issuer_client import (
    BadIdToken,
    IssuerClient,
    IssuerRefused,
    IssuerUnavailable,
    new_pending_login,
)
from webapp.resources import SERVICES, SIGN_IN_AUDIENCE, Listing, Resources, SignInEnded
from webapp.sessions import Session, SessionStore, SignedIn
from webapp.settings import CALLBACK_PATH, SIGNED_OUT_PATH, WebappSettings

logger = logging.getLogger("keyhouse.webapp")

COOKIE = "__Host-webapp-session"
_ERROR_CODE = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §4.1.2.1


@dataclass
class Webapp:
    settings: WebappSettings
    sessions: SessionStore
    issuer: IssuerClient
    resources: Resources
    jwks: JWKSClient
    clock: Clock


def _app(request: Request) -> Webapp:
    webapp: Webapp = request.app.state.webapp
    return webapp


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    webapp = _app(request)
    return pages.render(name, context, issuer_origin=webapp.settings.issuer_origin, status=status)


def _error(request: Request, title: str, description: str, status: int) -> Response:
    return _page(request, "error.html", status, title=title, description=description)


def _set_cookie(response: Response, value: str) -> None:
    # __Host-: Secure, Path=/, no Domain (the browser refuses it otherwise). HttpOnly: no script
    # reads it. SameSite=Lax: not sent on cross-site subresource requests or POSTs.
    response.set_cookie(COOKIE, value, path="/", secure=True, httponly=True, samesite="lax")


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def _session(request: Request) -> Session | None:
    return _app(request).sessions.find(request.cookies.get(COOKIE))


# -- pages ----------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    webapp = _app(request)
    session = _session(request)
    if session is None or session.user is None:
        response = _page(request, "signed_out.html", heading="Sign in", notice=None)
        if session is None and COOKIE in request.cookies:
            _clear_cookie(response)
        return response
    results = await asyncio.gather(
        *(webapp.resources.list(session, service) for service in SERVICES),
        return_exceptions=True,
    )
    listings: list[Listing] = []
    for service, result in zip(SERVICES, results, strict=True):
        if isinstance(result, SignInEnded):
            webapp.sessions.end(session)
            response = _page(
                request,
                "signed_out.html",
                heading="Sign in",
                notice="Your sign-in has ended. Sign in again.",
            )
            _clear_cookie(response)
            return response
        if isinstance(result, IssuerUnavailable):
            logger.warning("could not renew the %s token: %s", service, result)
            result = Listing(service, problem="the issuer could not be reached to renew access")
        elif isinstance(result, BaseException):
            raise result
        listings.append(result)
    user = session.user
    notice, session.notice = session.notice, None
    return _page(
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
    webapp = _app(request)
    service = request.path_params["service"]
    if service not in SERVICES:
        return _error(request, "Not found", "There is nothing to see here.", 404)
    if not same_origin(request, webapp.settings.origin):
        return _error(request, "Refused", "The form did not come from this site.", 403)
    form = await read_form(request)
    if form is None:
        return _error(request, "Refused", "The form could not be read.", 400)
    session = _session(request)
    if session is None or session.user is None:
        return _redirect("/")
    if not csrf_ok(form, session):
        return _error(request, "Refused", "The form has expired. Try again.", 403)
    title = form.get("title", "").strip()
    try:
        problem = await webapp.resources.add(session, service, title)
    except SignInEnded:
        return _redirect("/")  # the page says the sign-in has ended
    except IssuerUnavailable as exc:
        logger.warning("could not renew the %s token: %s", service, exc)
        problem = "the issuer could not be reached to renew access"
    session.notice = problem
    return _redirect("/")


async def login(request: Request) -> Response:
    """Starts a sign-in: a pending request (state, nonce, PKCE verifier) kept in the session,
    the browser sent to the issuer's ``/authorize``."""
    webapp = _app(request)
    session = _session(request)
    if session is not None and session.user is not None:
        return _redirect("/")
    cookie = None
    if session is None:
        cookie, session = webapp.sessions.create()
    pending = new_pending_login(webapp.clock())
    webapp.sessions.add_pending(session, pending)
    response = _redirect(webapp.issuer.authorization_url(pending, audience=SIGN_IN_AUDIENCE))
    if cookie is not None:
        _set_cookie(response, cookie)
    return response


async def callback(request: Request) -> Response:
    """The issuer's answer (RFC 6749 §4.1.2, RFC 9207): checked against the pending request it
    names, the code redeemed, the ID token checked, a fresh session started."""
    webapp = _app(request)
    pairs = request.query_params.multi_items()
    params = dict(pairs)
    if len(params) != len(pairs):
        return _error(request, "Sign-in failed", "The answer repeats a parameter.", 400)
    session = _session(request)
    state = params.get("state", "")
    pending = webapp.sessions.take_pending(session, state) if session and state else None
    if session is None or pending is None:
        return _error(
            request,
            "Sign-in failed",
            "This sign-in was not started in this browser, was already completed, or took too "
            "long. Sign in again.",
            400,
        )
    if params.get("iss") != webapp.settings.issuer:
        return _error(request, "Sign-in failed", "The answer did not come from the issuer.", 400)
    error = params.get("error")
    if error is not None:
        if error == "access_denied":
            return _error(request, "Sign-in cancelled", "You did not allow the sign-in.", 403)
        shown = error if _ERROR_CODE.fullmatch(error) else "an error"
        return _error(request, "Sign-in failed", f"The issuer answered {shown}.", 400)
    code = params.get("code")
    if not code:
        return _error(request, "Sign-in failed", "The answer holds no code.", 400)
    try:
        tokens = await webapp.issuer.redeem(code, pending)
        assert tokens.id_token is not None  # redeem refuses a response without one
        claims = await webapp.issuer.verify_id_token(
            tokens.id_token, nonce=pending.nonce, access_token=tokens.access_token
        )
    except IssuerRefused as exc:
        return _error(request, "Sign-in failed", f"The issuer refused the code ({exc.error}).", 400)
    except IssuerUnavailable as exc:
        logger.warning("code redemption failed: %s", exc)
        return _error(request, "Sign-in failed", "The issuer could not be reached.", 502)
    except KeysUnavailable:
        return _error(request, "Sign-in failed", "The issuer's keys could not be fetched.", 503)
    except BadIdToken as exc:
        logger.warning("refused an ID token: %s", exc.reason)
        return _error(request, "Sign-in failed", "The issuer's answer failed its checks.", 502)
    name = await webapp.issuer.preferred_username(tokens.access_token)
    user = SignedIn(
        subject=claims.subject,
        display_name=name or claims.subject,
        id_token=tokens.id_token,
        refresh_token=tokens.refresh_token,
    )
    cookie, fresh = webapp.sessions.sign_in(session, user)
    webapp.resources.keep(fresh, SIGN_IN_AUDIENCE, tokens.access_token, tokens.expires_in)
    logger.info("signed in %s", claims.subject)
    response = _redirect("/")
    _set_cookie(response, cookie)
    return response


async def logout(request: Request) -> Response:
    """Sign-out: a form POST from this origin carrying the session's CSRF token; the session
    ends here, its refresh token is revoked, and the browser goes to the issuer's ``/logout``."""
    webapp = _app(request)
    if not same_origin(request, webapp.settings.origin):
        return _error(request, "Refused", "The sign-out did not come from this site.", 403)
    form = await read_form(request)
    if form is None:
        return _error(request, "Refused", "The sign-out form could not be read.", 400)
    session = _session(request)
    if session is None or session.user is None:
        response = _redirect("/")
        _clear_cookie(response)
        return response
    if not csrf_ok(form, session):
        return _error(request, "Refused", "The sign-out form has expired. Try again.", 403)
    user = session.user
    webapp.sessions.end(session)
    async with session.lock:  # a refresh in progress ends first; its successor is revoked
        refresh_token = user.refresh_token
        user.refresh_token = None
    if refresh_token is not None:
        try:
            await webapp.issuer.revoke(refresh_token)
        except IssuerUnavailable as exc:
            logger.warning("could not revoke a refresh token at sign-out: %s", exc)
    logger.info("signed out %s", user.subject)
    response = _redirect(webapp.issuer.end_session_url(user.id_token))
    _clear_cookie(response)
    return response


async def signed_out(request: Request) -> Response:
    return _page(request, "signed_out.html", heading="You are signed out", notice=None)


# -- operations -----------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    webapp = _app(request)
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
    if _app(request).jwks.state()["usable"]:
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
    return _error(request, title, "There is nothing to see here.", exc.status_code)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log_unexpected(logger, request.method, request.url.path, exc)
    return _error(request, "Something went wrong", "Try again in a moment.", 500)


# -- the app --------------------------------------------------------------------------------


def _http_client(
    settings: WebappSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if settings.ca_file:
        verify = ssl.create_default_context(cafile=settings.ca_file)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.http_timeout),
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "keyhouse-webapp"},
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
        issuer = IssuerClient(settings, http, jwks, clock=clock)
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
