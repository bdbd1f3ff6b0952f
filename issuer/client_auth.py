"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3.1).

Two methods: ``client_secret_basic`` and ``client_secret_post``; using both at once is refused.
Every failure reads the same from outside (``invalid_client``), whatever went wrong.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import unquote_plus

from issuer.accounts import Client, check_client_secret
from shared.errors import InvalidClient, InvalidRequest

METHODS = ("client_secret_basic", "client_secret_post")


def client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str, str]:
    """The (client_id, client_secret, method) a request presents."""
    basic = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            basic = value.strip()
    in_body = "client_secret" in form
    if basic is not None and in_body:
        raise InvalidRequest("use exactly one client authentication method")
    if basic is not None:
        try:
            decoded = base64.b64decode(basic, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient("client authentication failed") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise InvalidClient("client authentication failed")
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if "client_id" in form and form["client_id"] != client_id:
            raise InvalidRequest("client_id in the body does not match the Authorization header")
        return client_id, secret, "client_secret_basic"
    if in_body and "client_id" in form:
        return form["client_id"], form["client_secret"], "client_secret_post"
    raise InvalidClient("client authentication is required")


def authenticate_client(
    form: dict[str, str], authorization: str | None, lookup: Callable[[str], Client | None]
) -> Client:
    client_id, secret, _method = client_credentials(form, authorization)
    client = lookup(client_id) if 0 < len(client_id) <= 128 else None
    if not check_client_secret(client, secret) or client is None:
        raise InvalidClient("client authentication failed")
    return client
