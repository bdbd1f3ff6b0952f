"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3.1).

Three methods: ``client_secret_basic`` and ``client_secret_post``, using both at once is refused;
and ``none`` (RFC 7591 §2, OAuth 2.1 §2.4) for public clients, registered ``--public``: the
``client_id`` in the body, no secret and no ``Authorization`` header. ``none`` authenticates a
public client only, and a public client nothing else (a secret presented for it fails). Every
failure reads the same from outside (``invalid_client``), whatever went wrong.

Malformed credentials are failed authentications like any other (401 ``invalid_client``,
counted by the throttle and audited by the caller), never a crash: a ``Basic`` value that is
not ASCII or not base64, a decoded pair that is not UTF-8 or has no colon, a half that is not
valid ``application/x-www-form-urlencoded`` (RFC 6749 §2.3.1, Appendix B), and a client_id or
secret that is empty or not made of VSCHARs (%x20-7E, RFC 6749 Appendix A.1, A.2).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from issuer.accounts import Client, check_client_secret
from shared.errors import InvalidClient, InvalidRequest

METHODS = ("client_secret_basic", "client_secret_post", "none")
MAX_CLIENT_ID = 128

_MALFORMED = "malformed client credentials"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _vschar(value: str) -> bool:
    """``*VSCHAR`` (RFC 6749 Appendix A): printable ASCII, %x20-7E."""
    return value.isascii() and value.isprintable()


def _form_decode(value: str) -> str:
    """One half of a ``Basic`` pair, decoded as ``application/x-www-form-urlencoded``.

    Strict where ``urllib.parse.unquote_plus`` guesses: a ``%`` not followed by two hex digits
    and escapes that do not decode to UTF-8 are malformed, not kept or replaced.
    """
    if "%" not in value:
        return value.replace("+", " ")
    if _BAD_PERCENT.search(value):
        raise InvalidClient(_MALFORMED)
    try:
        return unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidClient(_MALFORMED) from None


def _basic_pair(value: str) -> tuple[str, str]:
    """The (client_id, client_secret) in a ``Basic`` credential (``value`` after the scheme)."""
    try:
        # Header values reach us decoded as latin-1: anything beyond ASCII is not base64.
        decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        raise InvalidClient(_MALFORMED) from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        raise InvalidClient(_MALFORMED)
    return _form_decode(raw_id), _form_decode(raw_secret)


def client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str, str]:
    """The (client_id, client_secret, method) a request presents.

    Raises :class:`InvalidClient` when there are none or they are malformed, and
    :class:`InvalidRequest` when both methods are used or the two client_ids disagree.
    """
    basic = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            basic = value.strip()
    in_body = "client_secret" in form
    if basic is not None and in_body:
        raise InvalidRequest("use exactly one client authentication method")
    if basic is not None:
        client_id, secret = _basic_pair(basic)
        method = "client_secret_basic"
        if "client_id" in form and form["client_id"] != client_id:
            raise InvalidRequest("client_id in the body does not match the Authorization header")
    elif in_body and "client_id" in form:
        client_id, secret = form["client_id"], form["client_secret"]
        method = "client_secret_post"
    elif "client_id" in form and not in_body and authorization is None:
        client_id, secret = form["client_id"], ""
        method = "none"  # a public client (checked in authenticate_client)
    else:
        raise InvalidClient("client authentication is required")
    if not client_id or not _vschar(client_id) or not _vschar(secret):
        raise InvalidClient(_MALFORMED)
    return client_id, secret, method


def authenticate_client(
    form: dict[str, str], authorization: str | None, lookup: Callable[[str], Client | None]
) -> Client:
    client_id, secret, method = client_credentials(form, authorization)
    client = lookup(client_id) if len(client_id) <= MAX_CLIENT_ID else None
    if method == "none":
        if client is None or not client.public or client.disabled:
            raise InvalidClient("client authentication failed")
        return client
    if not check_client_secret(client, secret) or client is None:
        raise InvalidClient("client authentication failed")
    return client
