"""Sign-in for people: ``GET /authorize`` (RFC 6749 §4.1, RFC 7636, RFC 9207, OpenID Connect
``prompt``/``max_age``/``nonce``), the login form's ``POST /login`` and the consent form's
``POST /consent``. Every answer is an HTML page (``issuer/pages.py``) or a 303 redirect.

* A request whose client or redirect URI is not known good gets an error page, never a
  redirect (``issuer/authorization.py`` step 1); later errors go back to the redirect URI.
* A live issuer session (``__Host-keyhouse-session``) skips the login page unless
  ``prompt=login`` or ``max_age`` says otherwise; ``prompt=none`` never shows a page.
* The forms carry a signed ticket (the checked request) and a CSRF token bound to the
  ``__Host-keyhouse-csrf`` cookie (``issuer/tickets.py``); a post whose ``Origin`` (or, without
  one, ``Referer``) is not the issuer's own, or whose token does not match, is refused (403)
  before anything else is looked at. The pages are ``Referrer-Policy: no-referrer``, so a
  browser posts their forms with ``Origin: null``: that counts as the issuer's own origin only
  together with ``Sec-Fetch-Site: same-origin`` (a header no page can set); an opaque origin
  from anywhere else (a sandboxed frame, a ``data:`` URL) is cross-site there.
* The login check is the password grant's: the same throttle keys, argon2 check on the password
  threads, audit events and one generic message for every failure. A login always starts a new
  session (a session presented before it is ended, never reused: no fixation).
* Clients registered first-party skip consent; for others an approval is remembered per user
  and client (``issuer/consents.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from issuer import audit, pages
from issuer.accounts import MAX_USERNAME, User
from issuer.authorization import (
    AccessDenied,
    AuthorizationRequest,
    LoginRequired,
    check_request,
    check_target,
    error_redirect,
    granted_scopes,
    parse_query,
    target_of,
)
from issuer.container import Issuer
from issuer.cookies import CSRF_COOKIE, SESSION_COOKIE, read_cookie, set_cookie
from issuer.grants import in_thread
from issuer.http import client_address, issuer_of, read_form
from issuer.sessions import LoginSession
from issuer.sign_in import (
    CONSENT,
    LOGIN,
    answer_signed_in,
    find_client,
    issue_code,
    login_page,
    redirect,
    redirect_error,
    signed_in,
)
from issuer.tickets import InvalidTicket, Tickets
from shared.errors import InvalidRequest, KeyhouseError, SlowDown

WRONG_LOGIN = "The username or password is incorrect."
REFUSED_TITLE = "Sign-in request refused"

Endpoint = Callable[[Request], Awaitable[Response]]


class _Forbidden(KeyhouseError):
    """A form post from elsewhere (wrong origin or CSRF token): 403, nothing done."""

    error = "access_denied"
    status_code = 403


def html_errors(endpoint: Endpoint) -> Endpoint:
    """A refusal or a database outage met by ``endpoint`` as an error page, not JSON."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except KeyhouseError as exc:
            if not exc.expose:
                raise  # the app's handler logs it and answers "internal error"
            return pages.error_page(
                REFUSED_TITLE, exc.description, status=exc.status_code, headers=exc.headers
            )
        except SQLAlchemyError as exc:
            error = issuer_of(request).outage.error_for(exc)
            if error is None:
                raise
            return pages.error_page(
                "Temporarily unavailable",
                "Signing in is not possible right now. Try again in a moment.",
                status=error.status_code,
                headers=error.headers,
            )

    return wrapped


# -- GET /authorize ---------------------------------------------------------------------------


@html_errors
async def authorize(request: Request) -> Response:
    issuer = issuer_of(request)
    try:
        raw = request.scope["query_string"].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the request's parameters must be percent-encoded UTF-8") from None
    query = parse_query(raw)
    client_id, redirect_uri = target_of(query)
    client = check_target(await find_client(issuer, client_id), redirect_uri)
    # From here on the redirect URI is the client's own: errors go back to it.
    try:
        auth = check_request(query, client, redirect_uri)
    except KeyhouseError as exc:
        iss = issuer.settings.issuer_url
        return redirect(error_redirect(redirect_uri, iss, exc, query.state()))
    now = issuer.tokens.clock()
    known = await signed_in(request, issuer, now)
    if known is not None:
        session, user = known
        too_old = auth.max_age is not None and now - session.auth_time > auth.max_age
        if not auth.forces_login and not too_old:
            return await answer_signed_in(request, issuer, client, auth, session, user, now)
    if auth.no_prompt:
        return redirect_error(issuer, auth, LoginRequired("the user is not signed in"))
    return login_page(request, issuer, client, auth, now)


# -- POST /login ------------------------------------------------------------------------------


@html_errors
async def login(request: Request) -> Response:
    issuer = issuer_of(request)
    form = await _checked_form(request, issuer)
    now = issuer.tokens.clock()
    auth = _open_request(issuer, LOGIN, form, now)
    client = check_target(await find_client(issuer, auth.client_id), auth.redirect_uri)
    username, password = form.get("username", ""), form.get("password", "")
    shown = username[:MAX_USERNAME]  # what the form shows again
    if not username or not password:
        return login_page(
            request,
            issuer,
            client,
            auth,
            now,
            error="Enter your username and password.",
            username=shown,
            status=400,
        )
    address = client_address(request)
    tokens = issuer.tokens
    try:
        user = await tokens.check_login(
            username,
            password,
            client_id=client.client_id,
            address=address,
            where=" on the login page",
        )
    except SlowDown as exc:
        message = f"Too many failed sign-in attempts. Try again in {exc.headers['Retry-After']} s."
        return login_page(
            request, issuer, client, auth, now, error=message, status=429, headers=exc.headers
        )
    if user is None:
        return login_page(
            request, issuer, client, auth, now, error=WRONG_LOGIN, username=shown, status=401
        )
    cookie, session = await in_thread(lambda: _new_session(request, issuer, user, now))
    await in_thread(
        lambda: tokens.audit.record(
            audit.USER_LOGIN,
            client_id=client.client_id,
            subject=user.subject,
            address=address,
            detail=f"signed in on the login page; session {session.sid}",
        )
    )
    response = await answer_signed_in(request, issuer, client, auth, session, user, now)
    set_cookie(response, SESSION_COOKIE, cookie, max_age=issuer.settings.session_ttl)
    return response


def _new_session(
    request: Request, issuer: Issuer, user: User, now: float
) -> tuple[str, LoginSession]:
    """A fresh session for ``user``; the one the browser presented, if any, is ended: an id
    known before the login (planted by someone else, say) never becomes a signed-in one."""
    presented = read_cookie(request, SESSION_COOKIE)
    if presented is not None:
        earlier = issuer.sessions.find(presented, now)
        if earlier is not None:
            issuer.sessions.end(earlier.sid, now)
    return issuer.sessions.create(user.user_id, now)


# -- POST /consent ----------------------------------------------------------------------------


@html_errors
async def consent(request: Request) -> Response:
    issuer = issuer_of(request)
    form = await _checked_form(request, issuer)
    now = issuer.tokens.clock()
    data = _open(issuer, CONSENT, form, now)
    try:
        auth = AuthorizationRequest.from_dict(data["request"])
        sid, shown = data["sid"], frozenset(data["scopes"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("this sign-in request is not valid; start again") from None
    client = check_target(await find_client(issuer, auth.client_id), auth.redirect_uri)
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        raise InvalidRequest("decision must be approve or deny")
    known = await signed_in(request, issuer, now)
    if known is None or known[0].sid != sid:
        # Signed out (or in as someone else) since the page was shown: ask who it is again.
        return login_page(request, issuer, client, auth, now)
    session, user = known
    if decision == "deny":
        return redirect_error(issuer, auth, AccessDenied("the user denied the request"))
    # What the page showed, and still within what the user holds now.
    scopes = shown & granted_scopes(auth.scopes, user.scopes)
    await in_thread(
        lambda: issuer.consents.grant(user.user_id, client.client_id, scopes, auth.audience, now)
    )
    return await issue_code(issuer, auth, session, user, scopes, now)


# -- the steps ---------------------------------------------------------------------------------


async def _checked_form(request: Request, issuer: Issuer) -> dict[str, str]:
    """The posted form, once its origin and CSRF token are right (403 otherwise)."""
    form = await read_form(request, issuer.settings.max_body_bytes)
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        origin = pages.origin_of(referer) if referer else None
    if origin == "null":  # a form of a no-referrer page: the browser vouches for its site
        same_origin = request.headers.get("sec-fetch-site") == "same-origin"
    else:
        same_origin = origin is not None and pages.origin_of(origin) == _own_origin(issuer)
    tickets = Tickets(issuer.sign_in_key)
    if not same_origin or not tickets.csrf_matches(
        read_cookie(request, CSRF_COOKIE), form.get("csrf_token")
    ):
        raise _Forbidden("This form was not sent from this sign-in page. Start again.")
    return form


def _open(issuer: Issuer, purpose: str, form: dict[str, str], now: float) -> dict[str, Any]:
    try:
        return Tickets(issuer.sign_in_key).open(purpose, form.get("ticket"), now=now)
    except InvalidTicket:
        raise InvalidRequest(
            "this sign-in page has expired or was altered; start again from the application"
        ) from None


def _open_request(
    issuer: Issuer, purpose: str, form: dict[str, str], now: float
) -> AuthorizationRequest:
    try:
        return AuthorizationRequest.from_dict(_open(issuer, purpose, form, now))
    except ValueError:
        raise InvalidRequest("this sign-in request is not valid; start again") from None


def _own_origin(issuer: Issuer) -> str | None:
    return pages.origin_of(issuer.settings.issuer_url)
