"""Starlette glue for :class:`shared.verification.BearerAuthenticator`.

``BearerAuthBackend`` plugs into Starlette's ``AuthenticationMiddleware``: a request without an
``Authorization`` header passes through unauthenticated (public endpoints stay public); a
request with one is verified, and a bad token is answered by the app's error serialiser.

For the DPoP scheme it hands the authenticator :func:`proof_context`, called only then: the
``DPoP`` header values, the method, and the URL the proof's ``htu`` must name:
``RESOURCE_PUBLIC_URL`` + the raw path when set, else the request's own URL as the server saw
it (scheme as uvicorn presents it, which honours ``X-Forwarded-Proto`` only from
``--forwarded-allow-ips``; the ``Host`` header; the raw path), never with the query.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import InsufficientScope, KeyhouseError, MissingToken
from shared.tokens import AccessToken
from shared.verification import ProofContext

FORM_CARRIER = "keyhouse.form_access_token"
MAX_FORM_SCAN = 16_384


class TokenUser(BaseUser):
    def __init__(self, token: AccessToken) -> None:
        self.token = token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.token.subject

    @property
    def identity(self) -> str:
        return self.token.subject


class KeyhouseAuthError(AuthenticationError):
    def __init__(self, error: KeyhouseError) -> None:
        super().__init__(error.description)
        self.error = error


class BearerAuthBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        headers = conn.headers.getlist("authorization")
        authorization = headers[0] if headers else None
        # RFC 6750 §2: exactly one carrier. A second Authorization header, the query parameter
        # (§2.3) or the form body parameter (§2.2) next to, or instead of, the header: 400.
        # Parsing the query string costs a measurable share of a cheap request: only when there
        # is one (the parameter may be percent-encoded, so a byte search would not do).
        others = len(headers) > 1 or (
            bool(conn.scope.get("query_string")) and "access_token" in conn.query_params
        )
        others = others or bool(conn.scope.get(FORM_CARRIER))
        if authorization is None and not others:
            return None
        authenticator = conn.app.state.resource.authenticator
        try:
            access: AccessToken = await authenticator.authenticate(
                authorization, other_carriers=others, request=lambda: proof_context(conn)
            )
        except KeyhouseError as exc:
            raise KeyhouseAuthError(exc) from exc
        return AuthCredentials(sorted(access.scopes)), TokenUser(access)


def proof_context(conn: HTTPConnection) -> ProofContext:
    """What this request's DPoP proof is checked against (see the module doc)."""
    scope = conn.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    public_url: str | None = conn.app.state.resource.settings.public_url
    if public_url is not None:
        url = public_url + path
    else:
        host = conn.headers.get("host")
        if host is None:
            server = scope.get("server") or ("", None)
            host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
        url = f"{scope['scheme']}://{host}{path}"
    return ProofContext(conn.headers.getlist("dpop"), scope["method"], url)


def require_scope(conn: HTTPConnection, scope: str | None) -> AccessToken:
    """The verified token of this request, which must hold ``scope`` (RFC 6750 §3.1)."""
    user = conn.user
    if not isinstance(user, TokenUser):
        raise MissingToken("no access token was sent")
    if scope is not None and scope not in user.token.scopes:
        raise InsufficientScope(f"requires scope {scope}", scope=scope)
    return user.token


class FormCarrierMiddleware:
    """Notes whether a form-encoded body carries ``access_token`` (RFC 6750 §2.2).

    Keyhouse accepts tokens in the ``Authorization`` header only; this lets the authentication
    backend refuse a body carrier (alone, or next to the header) with 400 ``invalid_request``.
    The body is read up to ``MAX_FORM_SCAN`` bytes and replayed unchanged to the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_form(scope):
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        body = b""
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False) or len(body) > MAX_FORM_SCAN:
                break
        if len(body) <= MAX_FORM_SCAN and _form_has_token(body):
            scope[FORM_CARRIER] = True

        async def replay() -> Message:
            if buffered:
                return buffered.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def _is_form(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/x-www-form-urlencoded")
    return False


def _form_has_token(body: bytes) -> bool:
    for pair in body.split(b"&"):
        if unquote_to_bytes(pair.split(b"=", 1)[0].replace(b"+", b" ")) == b"access_token":
            return True
    return False
