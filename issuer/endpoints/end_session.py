"""``GET``/``POST /logout``: OpenID Connect RP-Initiated Logout 1.0, the discovery document's
``end_session_endpoint``.

A client sends the user here with ``id_token_hint`` (an ID token this issuer signed; its
signature is checked, its expiry is not: it names a session, it grants nothing),
``post_logout_redirect_uri`` (used only when registered for that client, compared as an exact
string; otherwise an error page and no redirect, so the endpoint is no open redirector),
``state`` (handed back) and optionally ``client_id``.

What ends: the issuer session the hint names (its ``sid``; the session's user must be the
hint's ``sub``), with every refresh-token family started from it (``revoke_session``);
the session cookie is cleared when it is that session's. Without a hint that names a session,
the user is asked first (§2: the OP MUST ask when no ``id_token_hint`` was given): a page with
one button whose form carries a confirmation token, an HMAC under ``sign_in_key`` of the session
cookie's hash, so another site can neither skip the question nor answer it (it cannot read the
cookie; ``SameSite=Lax`` keeps the cookie off its cross-site POSTs anyway). Then the browser goes
to the ``post_logout_redirect_uri`` (303, with ``state``) or sees ``logged_out.html``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from issuer import pages
from issuer.accounts import Client, user_subject
from issuer.container import Issuer
from issuer.cookies import SESSION_COOKIE, clear_cookie, read_cookie
from issuer.forms import FORM_TYPE, parse_form
from issuer.http import issuer_of, read_body
from issuer.sessions import LoginSession, cookie_hash
from shared.errors import InvalidToken, KeyhouseError, MethodNotAllowed
from shared.id_tokens import IdTokenHint, check_id_token_hint
from shared.protocol import END_SESSION_PATH

MAX_STATE = 1024
MAX_CLIENT_ID = 128
_CONFIRM_DOMAIN = b"keyhouse logout v1\x00"
_TITLE = "Sign-out failed"


class LogoutRefused(Exception):
    """A request this endpoint answers with an error page (never a redirect)."""


@dataclass(frozen=True)
class LogoutRequest:
    hint: IdTokenHint | None
    client: Client | None
    redirect_uri: str | None
    state: str | None


async def end_session(request: Request) -> Response:
    try:
        return await _end_session(request)
    except SQLAlchemyError as exc:  # a page for a browser, never the JSON 503
        error = issuer_of(request).outage.error_for(exc)
        if error is None:
            raise  # not an outage: the app's 500
        return pages.error_page(
            "Temporarily unavailable",
            "Signing out is not possible right now. Try again in a moment.",
            status=error.status_code,
            headers=error.headers,
        )


async def _end_session(request: Request) -> Response:
    issuer = issuer_of(request)
    if request.method not in ("GET", "POST"):
        raise MethodNotAllowed("use GET or POST", headers={"Allow": "GET, POST"})
    try:
        params = await _parameters(request, issuer)
        logout = await anyio.to_thread.run_sync(lambda: _check(issuer, params))
    except LogoutRefused as exc:
        return pages.error_page(_TITLE, str(exc), status=400)
    except KeyhouseError as exc:  # a malformed request: an error page too, never JSON here
        return pages.error_page(_TITLE, exc.description, status=exc.status_code)
    now = issuer.keyring.clock()
    cookie = read_cookie(request, SESSION_COOKIE)
    current = await anyio.to_thread.run_sync(
        lambda: issuer.sessions.find(cookie, now) if cookie else None
    )
    hinted = logout.hint.sid if logout.hint is not None else None
    if hinted is None and current is not None:
        # No hint naming a session, a signed-in user: only they may say yes (§2).
        confirm = params.get("confirm")
        assert cookie is not None  # current came from it
        if request.method != "POST" or not confirm or not _confirmed(issuer, cookie, confirm):
            return _ask(issuer, logout, cookie)
        hinted = current.sid
    if hinted is not None:
        await anyio.to_thread.run_sync(lambda: _end(issuer, hinted, logout.hint, now))
    response = _after(logout)
    if current is None or current.sid == hinted:
        # Ended now, or already dead: the browser drops it. A live session other than the one
        # the hint named (another login in this browser) is left alone.
        clear_cookie(response, SESSION_COOKIE)
    return response


async def _parameters(request: Request, issuer: Issuer) -> dict[str, str]:
    """The query (GET) or the form body (POST), each parameter once, no control characters."""
    if request.method == "POST":
        body = await read_body(
            request.receive, request.headers.get("content-length"), issuer.settings.max_body_bytes
        )
        return parse_form(body, request.headers.get("content-type"))
    return parse_form(request.scope.get("query_string", b""), FORM_TYPE)


def _check(issuer: Issuer, params: dict[str, str]) -> LogoutRequest:
    """The request's hint, client and redirect URI, or :class:`LogoutRefused`."""
    hint = None
    if params.get("id_token_hint"):
        try:
            hint = check_id_token_hint(
                params["id_token_hint"],
                issuer=issuer.settings.issuer_url,
                key_for=issuer.keyring.verification_key,
            )
        except InvalidToken:
            raise LogoutRefused(
                "The ID token sent with this request was not issued here."
            ) from None
    client_id = params.get("client_id") or None
    if hint is not None and client_id is not None and client_id != hint.client_id:
        raise LogoutRefused("client_id does not match the ID token's client.")
    client_id = hint.client_id if hint is not None else client_id
    client = None
    if client_id is not None:
        if len(client_id) > MAX_CLIENT_ID:
            raise LogoutRefused("The client is unknown.")
        client = issuer.tokens.accounts.get_client(client_id)
        if client is None or client.disabled:
            raise LogoutRefused("The client is unknown.")
    redirect_uri = params.get("post_logout_redirect_uri") or None
    if redirect_uri is not None and (
        client is None or redirect_uri not in client.post_logout_redirect_uris
    ):
        raise LogoutRefused(
            "post_logout_redirect_uri is not registered for this client: not redirecting."
        )
    state = params.get("state") or None
    if state is not None and len(state) > MAX_STATE:
        raise LogoutRefused(f"state is longer than {MAX_STATE} characters.")
    return LogoutRequest(hint=hint, client=client, redirect_uri=redirect_uri, state=state)


def _end(issuer: Issuer, sid: str, hint: IdTokenHint | None, now: float) -> None:
    """End the session ``sid`` and the refresh families started from it. With a hint, only if
    the session is the hint's user's (an ID token names its own session, no one else's)."""
    session: LoginSession | None = issuer.sessions.get(sid)
    if session is None:
        return
    if hint is not None and user_subject(session.user_id) != hint.subject:
        return
    issuer.sessions.end(sid, now)
    issuer.tokens.refresh_tokens.revoke_session(sid, now)


def _confirmation(issuer: Issuer, cookie: str) -> str:
    digest = cookie_hash(cookie).encode("ascii")
    return hmac.new(issuer.sign_in_key, _CONFIRM_DOMAIN + digest, hashlib.sha256).hexdigest()


def _confirmed(issuer: Issuer, cookie: str, presented: str) -> bool:
    return hmac.compare_digest(_confirmation(issuer, cookie).encode(), presented.encode())


def _ask(issuer: Issuer, logout: LogoutRequest, cookie: str) -> Response:
    """The question: sign out of Keyhouse? (the form posts back here with the confirmation)."""
    fields = {
        "confirm": _confirmation(issuer, cookie),
        "client_id": logout.client.client_id if logout.client else "",
        "post_logout_redirect_uri": logout.redirect_uri or "",
        "state": logout.state or "",
    }
    return pages.render(
        "logged_out.html",
        {
            "confirm": True,
            "action": END_SESSION_PATH,
            "fields": {name: value for name, value in fields.items() if value},
            "client_name": logout.client.name if logout.client else None,
        },
        # Chromium applies form-action to the redirect that answers the post.
        form_action=[logout.redirect_uri] if logout.redirect_uri else (),
    )


def _after(logout: LogoutRequest) -> Response:
    if logout.redirect_uri is None:
        return pages.render("logged_out.html", {"confirm": False, "client_name": None})
    location = logout.redirect_uri
    if logout.state is not None:
        location += ("&" if "?" in location else "?") + urlencode({"state": logout.state})
    return RedirectResponse(
        location,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
