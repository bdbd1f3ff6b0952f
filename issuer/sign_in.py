"""The sign-in steps the three sign-in endpoints share (``issuer/endpoints/authorize.py``):
who is signed in, the login and consent pages (each with its signed ticket and CSRF token), and
what follows a known user: the consent page when one is needed, else a code and the redirect
back to the client.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from issuer import pages
from issuer.accounts import Client, User
from issuer.authorization import (
    AuthorizationRequest,
    ConsentRequired,
    error_redirect,
    granted_scopes,
    redirect_url,
)
from issuer.container import Issuer
from issuer.cookies import CSRF_COOKIE, SESSION_COOKIE, read_cookie, set_cookie
from issuer.grants import in_thread
from issuer.sessions import LoginSession
from issuer.tickets import Tickets
from shared.errors import KeyhouseError
from shared.protocol import CONSENT_PATH, LOGIN_PATH

LOGIN = "login"  # the tickets' purposes
CONSENT = "consent"
MAX_CLIENT_ID = 200


async def answer_signed_in(
    request: Request,
    issuer: Issuer,
    client: Client,
    auth: AuthorizationRequest,
    session: LoginSession,
    user: User,
    now: float,
) -> Response:
    """The user is known: the consent page when one is needed, else the code."""
    scopes = granted_scopes(auth.scopes, user.scopes)
    if not client.first_party:
        asked = "consent" in auth.prompt
        covered = not asked and await in_thread(
            lambda: issuer.consents.covers(user.user_id, client.client_id, scopes, auth.audience)
        )
        if not covered:
            if auth.no_prompt:
                return redirect_error(
                    issuer, auth, ConsentRequired("the user has not approved this")
                )
            return consent_page(request, issuer, client, auth, session, user, scopes, now)
    return await issue_code(issuer, auth, session, user, scopes, now)


async def issue_code(
    issuer: Issuer,
    auth: AuthorizationRequest,
    session: LoginSession,
    user: User,
    scopes: frozenset[str],
    now: float,
) -> Response:
    code = await in_thread(
        lambda: issuer.codes.issue(
            client_id=auth.client_id,
            redirect_uri=auth.redirect_uri,
            code_challenge=auth.code_challenge,
            user_id=user.user_id,
            scopes=scopes,
            audience=auth.audience,
            nonce=auth.nonce,
            sid=session.sid,
            auth_time=session.auth_time,
            now=now,
        )
    )
    params = {"code": code, "state": auth.state, "iss": _iss(issuer)}
    return redirect(redirect_url(auth.redirect_uri, params))


async def signed_in(
    request: Request, issuer: Issuer, now: float
) -> tuple[LoginSession, User] | None:
    """The live session the browser presents and its user (None if the user is disabled)."""
    cookie = read_cookie(request, SESSION_COOKIE)
    if cookie is None:
        return None

    def look_up() -> tuple[LoginSession, User] | None:
        session = issuer.sessions.find(cookie, now)
        if session is None:
            return None
        user = issuer.tokens.accounts.get_user_by_id(session.user_id)
        return None if user is None or user.disabled else (session, user)

    return await in_thread(look_up)


async def find_client(issuer: Issuer, client_id: str) -> Client | None:
    if len(client_id) > MAX_CLIENT_ID:
        return None
    return await in_thread(lambda: issuer.tokens.accounts.get_client(client_id))


def _csrf(request: Request, tickets: Tickets) -> tuple[str, bool]:
    """The browser's CSRF cookie value, or a new one (True: set it)."""
    value = read_cookie(request, CSRF_COOKIE)
    if tickets.is_csrf_cookie(value):
        assert value is not None
        return value, False
    return tickets.new_csrf_cookie(), True


def _form_page(
    request: Request,
    issuer: Issuer,
    template: str,
    context: dict[str, Any],
    auth: AuthorizationRequest,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    tickets = Tickets(issuer.sign_in_key)
    cookie, new = _csrf(request, tickets)
    response = pages.render(
        template,
        {**context, "csrf_token": tickets.csrf_token(cookie)},
        status=status,
        form_action=[auth.redirect_uri],  # the post may end in a redirect there
        headers=headers,
    )
    if new:
        set_cookie(response, CSRF_COOKIE, cookie)
    return response


def login_page(
    request: Request,
    issuer: Issuer,
    client: Client,
    auth: AuthorizationRequest,
    now: float,
    *,
    error: str | None = None,
    username: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    ticket = Tickets(issuer.sign_in_key).seal(LOGIN, auth.to_dict(), now=now)
    context = {
        "client_name": client.name,
        "ticket": ticket,
        "action": LOGIN_PATH,
        "error": error,
        "username": username if username is not None else (auth.login_hint or ""),
    }
    return _form_page(request, issuer, "login.html", context, auth, status=status, headers=headers)


def consent_page(
    request: Request,
    issuer: Issuer,
    client: Client,
    auth: AuthorizationRequest,
    session: LoginSession,
    user: User,
    scopes: frozenset[str],
    now: float,
) -> Response:
    data = {"request": auth.to_dict(), "sid": session.sid, "scopes": sorted(scopes)}
    context = {
        "client_name": client.name,
        "username": user.username,
        "scopes": sorted(scopes),
        "audience": auth.audience,
        "ticket": Tickets(issuer.sign_in_key).seal(CONSENT, data, now=now),
        "action": CONSENT_PATH,
    }
    return _form_page(request, issuer, "consent.html", context, auth)


def _iss(issuer: Issuer) -> str:
    return issuer.settings.issuer_url


def redirect_error(issuer: Issuer, auth: AuthorizationRequest, error: KeyhouseError) -> Response:
    return redirect(error_redirect(auth.redirect_uri, _iss(issuer), error, auth.state))


def redirect(url: str) -> Response:
    """303: the browser follows with a GET; no Referer reaches the client's page."""
    headers = {
        "Location": url,
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
    }
    return Response(status_code=303, headers=headers)
