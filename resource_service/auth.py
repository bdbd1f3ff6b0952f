"""Starlette glue for :class:`shared.verification.BearerAuthenticator`.

``BearerAuthBackend`` plugs into Starlette's ``AuthenticationMiddleware``: a request without an
``Authorization`` header passes through unauthenticated (public endpoints stay public); a
request with one is verified, and a bad token is answered by the app's error serialiser.
"""

from __future__ import annotations

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection

from shared.errors import InsufficientScope, KeyhouseError, MissingToken
from shared.tokens import AccessToken


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
        authorization = conn.headers.get("authorization")
        in_query = "access_token" in conn.query_params
        if authorization is None and not in_query:
            return None
        authenticator = conn.app.state.resource.authenticator
        try:
            access: AccessToken = await authenticator.authenticate(
                authorization, other_carriers=in_query
            )
        except KeyhouseError as exc:
            raise KeyhouseAuthError(exc) from exc
        return AuthCredentials(sorted(access.scopes)), TokenUser(access)


def require_scope(conn: HTTPConnection, scope: str | None) -> AccessToken:
    """The verified token of this request, which must hold ``scope`` (RFC 6750 §3.1)."""
    user = conn.user
    if not isinstance(user, TokenUser):
        raise MissingToken("no access token was sent")
    if scope is not None and scope not in user.token.scopes:
        raise InsufficientScope(f"requires scope {scope}", scope=scope)
    return user.token
