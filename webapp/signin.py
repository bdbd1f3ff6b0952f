"""Signing in and out: ``GET /login`` starts the authorization code flow (PKCE S256, state,
nonce) and sends the browser to the issuer's ``/authorize``; ``GET /callback`` takes the code
back, redeems it on the back channel, checks the ID token and starts a session under a fresh
cookie value; ``POST /logout`` (the session's CSRF token and ``Origin`` checked) ends it,
revokes its refresh token and sends the browser to the issuer's ``/logout``;
``GET /signed-out`` is where the issuer sends it back."""

from __future__ import annotations

import contextlib
import re

from starlette.requests import Request
from starlette.responses import Response

from shared.errors import KeysUnavailable
from webapp.forms import csrf_ok, read_form, same_origin
from webapp.issuer_client import (
    BadIdToken,
    IssuerRefused,
    IssuerUnavailable,
    new_pending_login,
)
from webapp.resources import SIGN_IN_AUDIENCE
from webapp.sessions import SignedIn
from webapp.web import (
    clear_cookie,
    error_page,
    logger,
    page,
    redirect,
    session_of,
    set_cookie,
    webapp_of,
)

_ERROR_CODE = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §4.1.2.1


async def login(request: Request) -> Response:
    """Starts a sign-in: a pending request (state, nonce, PKCE verifier) kept in the session,
    the browser sent to the issuer's ``/authorize``."""
    webapp = webapp_of(request)
    session = session_of(request)
    if session is not None and session.user is not None:
        return redirect("/")
    cookie = None
    if session is None:
        cookie, session = webapp.sessions.create()
    pending = new_pending_login(webapp.clock())
    webapp.sessions.add_pending(session, pending)
    response = redirect(webapp.issuer.authorization_url(pending, audience=SIGN_IN_AUDIENCE))
    if cookie is not None:
        set_cookie(response, cookie)
    return response


async def callback(request: Request) -> Response:
    """The issuer's answer (RFC 6749 §4.1.2, RFC 9207): checked against the pending request it
    names, the code redeemed, the ID token checked, a fresh session started."""
    webapp = webapp_of(request)
    pairs = request.query_params.multi_items()
    params = dict(pairs)
    if len(params) != len(pairs):
        return error_page(request, "Sign-in failed", "The answer repeats a parameter.", 400)
    session = session_of(request)
    state = params.get("state", "")
    pending = webapp.sessions.take_pending(session, state) if session and state else None
    if session is None or pending is None:
        return error_page(
            request,
            "Sign-in failed",
            "This sign-in was not started in this browser, was already completed, or took too "
            "long. Sign in again.",
            400,
        )
    if params.get("iss") != webapp.settings.issuer:
        return error_page(
            request, "Sign-in failed", "The answer did not come from the issuer.", 400
        )
    error = params.get("error")
    if error is not None:
        if error == "access_denied":
            return error_page(request, "Sign-in cancelled", "You did not allow the sign-in.", 403)
        shown = error if _ERROR_CODE.fullmatch(error) else "an error"
        return error_page(request, "Sign-in failed", f"The issuer answered {shown}.", 400)
    code = params.get("code")
    if not code:
        return error_page(request, "Sign-in failed", "The answer holds no code.", 400)
    try:
        tokens = await webapp.issuer.redeem(code, pending)
    except IssuerRefused as exc:
        return error_page(
            request, "Sign-in failed", f"The issuer refused the code ({exc.error}).", 400
        )
    except IssuerUnavailable as exc:
        logger.warning("code redemption failed: %s", exc)
        return error_page(request, "Sign-in failed", "The issuer could not be reached.", 502)
    except BadIdToken as exc:  # a token response without an ID token
        logger.warning("refused a token response: %s", exc.reason)
        return error_page(request, "Sign-in failed", "The issuer's answer failed its checks.", 502)
    assert tokens.id_token is not None  # redeem refuses a response without one
    try:
        claims = await webapp.issuer.verify_id_token(
            tokens.id_token, nonce=pending.nonce, access_token=tokens.access_token
        )
    except (KeysUnavailable, BadIdToken) as exc:
        # Nothing of this sign-in is kept: its refresh token is given back.
        if tokens.refresh_token is not None:
            with contextlib.suppress(IssuerUnavailable):
                await webapp.issuer.revoke(tokens.refresh_token)
        if isinstance(exc, KeysUnavailable):
            return error_page(request, "Sign-in failed", "The issuer's keys could not be had.", 503)
        logger.warning("refused an ID token: %s", exc.reason)
        return error_page(request, "Sign-in failed", "The issuer's answer failed its checks.", 502)
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
    response = redirect("/")
    set_cookie(response, cookie)
    return response


async def logout(request: Request) -> Response:
    """Sign-out: a form POST from this origin carrying the session's CSRF token; the session
    ends here, its refresh token is revoked, and the browser goes to the issuer's ``/logout``."""
    webapp = webapp_of(request)
    if not same_origin(request, webapp.settings.origin):
        return error_page(request, "Refused", "The sign-out did not come from this site.", 403)
    form = await read_form(request)
    if form is None:
        return error_page(request, "Refused", "The sign-out form could not be read.", 400)
    session = session_of(request)
    if session is None or session.user is None:
        response = redirect("/")
        clear_cookie(response)
        return response
    if not csrf_ok(form, session):
        return error_page(request, "Refused", "The sign-out form has expired. Try again.", 403)
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
    response = redirect(webapp.issuer.end_session_url(user.id_token))
    clear_cookie(response)
    return response


async def signed_out(request: Request) -> Response:
    return page(request, "signed_out.html", heading="You are signed out", notice=None)
