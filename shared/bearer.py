"""Access token transport in ``Authorization``: Bearer (RFC 6750 §2) and DPoP (RFC 9449 §7.1)."""

from __future__ import annotations

import re

from shared.errors import InvalidRequest, InvalidToken, MissingToken

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


def extract_bearer(authorization: str | None, *, other_carriers: bool = False) -> str:
    """The token from an ``Authorization`` header value.

    The scheme is case-insensitive (RFC 9110 §11.1). ``other_carriers`` tells that the request
    also tried the form body or the query string: RFC 6750 §2 allows exactly one method.
    """
    if authorization is None:
        if other_carriers:
            raise InvalidRequest("send the access token in the Authorization header only")
        raise MissingToken("no access token was sent")
    if other_carriers:
        raise InvalidRequest("more than one method was used to send the access token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("the Authorization header does not use the Bearer scheme")
    token = token.strip(" ")
    if not token or not _B64TOKEN.match(token):
        raise InvalidToken("the bearer token is malformed")
    return token


BEARER, DPOP = "bearer", "dpop"


def extract_credentials(
    authorization: str | None, *, other_carriers: bool = False, dpop: bool = True
) -> tuple[str, str]:
    """``(scheme, token)`` from an ``Authorization`` header value: scheme ``"bearer"``, or
    ``"dpop"`` (RFC 9449 §7.1: the same token68 syntax) when ``dpop`` is accepted.

    The same refusals as :func:`extract_bearer`; any other scheme is no token at all."""
    if authorization is None or other_carriers:
        return BEARER, extract_bearer(authorization, other_carriers=other_carriers)
    scheme, _, token = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == BEARER:
        kind = BEARER
    elif scheme == DPOP and dpop:
        kind = DPOP
    else:
        raise MissingToken("the Authorization header does not use the Bearer scheme")
    token = token.strip(" ")
    if not token or not _B64TOKEN.match(token):
        what = "bearer" if kind == BEARER else "DPoP access"
        raise InvalidToken(f"the {what} token is malformed")
    return kind, token
