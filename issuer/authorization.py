"""The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core §3.1.2.1),
checked against its client: pure functions, no HTTP, no storage.

The check runs in two steps, because what may be done with an error depends on how far it got:

1. :func:`parse_query` and :func:`check_target` find the client and the redirect URI. Until
   both are known good (a registered client, a redirect URI registered for it, compared as
   exact strings), an error must not be sent to that URI: it would make the issuer an open
   redirector (RFC 6749 §4.1.2.1, RFC 9700 §4.11). These raise :class:`InvalidRequest`, which
   the endpoint shows on an error page.
2. :func:`check_request` checks the rest. Its errors go back to the redirect URI (with
   ``error``, ``error_description``, ``state`` and RFC 9207 ``iss``: :func:`redirect_url`).

The result, :class:`AuthorizationRequest`, is what the login and consent pages carry in their
signed ticket (``issuer/tickets.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from issuer.accounts import Client
from issuer.grants import resolve_audience, resolve_scope
from shared import pkce
from shared.errors import (
    InvalidRequest,
    KeyhouseError,
    UnauthorizedClient,
)

# Granted whenever the client is registered for them: they name the protocol (an ID token, the
# user's name), not a permission over the user's data that the user must hold.
PROTOCOL_SCOPES = frozenset({"openid", "profile"})
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# Bounds on values the ticket carries and the redirect repeats (the whole URL stays well under
# what browsers and servers accept).
MAX_STATE = 1024
MAX_NONCE = 512
MAX_LOGIN_HINT = 200
MAX_QUERY = 8192
# The parameters that decide where an error may go: repeated, nothing can be trusted.
_TARGET = ("client_id", "redirect_uri")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- the authorization errors RFC 6749 §4.1.2.1 and OpenID Connect Core §3.1.2.6 add ----------


class UnsupportedResponseType(KeyhouseError):
    error = "unsupported_response_type"
    status_code = 400


class AccessDenied(KeyhouseError):
    error = "access_denied"
    status_code = 403


class LoginRequired(KeyhouseError):
    error = "login_required"
    status_code = 401


class ConsentRequired(KeyhouseError):
    error = "consent_required"
    status_code = 403


class RequestNotSupported(KeyhouseError):
    error = "request_not_supported"
    status_code = 400


class RequestUriNotSupported(KeyhouseError):
    error = "request_uri_not_supported"
    status_code = 400


@dataclass(frozen=True)
class Query:
    """The query string's parameters (one value each; empty ones omitted, RFC 6749 §3.1) and
    the names given more than once (RFC 6749 §3.1: refused)."""

    params: dict[str, str]
    repeated: frozenset[str]

    def state(self) -> str | None:
        """The ``state`` to return with an error: none when it is itself the problem."""
        state = self.params.get("state")
        if state is None or "state" in self.repeated or len(state) > MAX_STATE:
            return None
        return state


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked request. ``scopes`` is what the client asked for (within its own scopes);
    what the user is granted is :func:`granted_scopes` of it once the user is known."""

    client_id: str
    redirect_uri: str
    state: str | None
    scopes: frozenset[str]
    audience: str
    code_challenge: str
    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None

    @property
    def forces_login(self) -> bool:
        """``prompt=login`` (or ``select_account``: signing in again is how one picks)."""
        return bool(self.prompt & {"login", "select_account"})

    @property
    def no_prompt(self) -> bool:
        return "none" in self.prompt

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "scopes": sorted(self.scopes),
            "audience": self.audience,
            "code_challenge": self.code_challenge,
            "nonce": self.nonce,
            "prompt": sorted(self.prompt),
            "max_age": self.max_age,
            "login_hint": self.login_hint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizationRequest:
        """The inverse of :meth:`to_dict`; ``ValueError`` for anything else."""
        try:
            request = cls(
                client_id=_text(data["client_id"]),
                redirect_uri=_text(data["redirect_uri"]),
                state=_optional_text(data["state"]),
                scopes=frozenset(_texts(data["scopes"])),
                audience=_text(data["audience"]),
                code_challenge=_text(data["code_challenge"]),
                nonce=_optional_text(data["nonce"]),
                prompt=frozenset(_texts(data["prompt"])),
                max_age=_optional_int(data["max_age"]),
                login_hint=_optional_text(data["login_hint"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("not an authorization request") from exc
        return request


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return [_text(v) for v in value]


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


# -- step 1: where errors may go --------------------------------------------------------------


def parse_query(query_string: str) -> Query:
    """The request's parameters. A query that is not UTF-8 form encoding, too long, or holds a
    control character is :class:`InvalidRequest` (shown on the error page)."""
    if len(query_string) > MAX_QUERY:
        raise InvalidRequest("the request is too long")
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request's parameters are not valid UTF-8") from None
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise InvalidRequest("a parameter contains a control character")
        if not value:
            continue  # RFC 6749 §3.1: sent without a value means omitted
        if name in params:
            repeated.add(name)
        params[name] = value
    return Query(params, frozenset(repeated))


def target_of(query: Query) -> tuple[str, str]:
    """The ``client_id`` and ``redirect_uri`` the request names, each present and given once.

    ``redirect_uri`` is required even when the client registered one only (OpenID Connect Core
    §3.1.2.1; OAuth 2.1 §4.1.1): the token request must then repeat it.
    """
    for name in _TARGET:
        if name in query.repeated:
            raise InvalidRequest(f"{name} is repeated")
    client_id = query.params.get("client_id")
    if client_id is None:
        raise InvalidRequest("client_id is missing")
    redirect_uri = query.params.get("redirect_uri")
    if redirect_uri is None:
        raise InvalidRequest("redirect_uri is missing")
    return client_id, redirect_uri


def check_target(client: Client | None, redirect_uri: str) -> Client:
    """The client, if it exists, is enabled, and registered ``redirect_uri`` (exact string
    comparison: no prefix, no wildcard, no normalisation)."""
    if client is None or client.disabled:
        raise InvalidRequest("this application is not registered here (unknown client_id)")
    if redirect_uri not in client.redirect_uris:
        raise InvalidRequest("the redirect_uri is not registered for this application")
    return client


# -- step 2: errors that go back to the client -------------------------------------------------


def check_request(query: Query, client: Client, redirect_uri: str) -> AuthorizationRequest:
    """The rest of the request, checked against ``client`` (already through step 1)."""
    params = query.params
    if query.repeated:
        raise InvalidRequest(f"parameter {sorted(query.repeated)[0][:40]!r} is repeated")
    if "request" in params:
        raise RequestNotSupported("request objects are not supported")
    if "request_uri" in params:
        raise RequestUriNotSupported("request_uri is not supported")
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequest("response_type is missing")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("this client may not use the authorization_code grant")
    if params.get("response_mode", "query") != "query":
        raise InvalidRequest("only response_mode=query is supported")
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE:
        raise InvalidRequest(f"state is longer than {MAX_STATE} characters")
    code_challenge = _code_challenge(params)
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise InvalidRequest(f"nonce is longer than {MAX_NONCE} characters")
    # Scope: omitted means every scope of the client; beyond them is invalid_scope (§3.3).
    scopes = resolve_scope(params.get("scope"), client.scopes)
    audience = resolve_audience(params, client.audiences, None)
    login_hint = params.get("login_hint")
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        scopes=scopes,
        audience=audience,
        code_challenge=code_challenge,
        nonce=nonce,
        prompt=_prompt(params.get("prompt")),
        max_age=_max_age(params.get("max_age")),
        login_hint=login_hint if login_hint and len(login_hint) <= MAX_LOGIN_HINT else None,
    )


def _code_challenge(params: Mapping[str, str]) -> str:
    """RFC 7636 §4.3, S256 only: ``plain``, and an omitted method (which means ``plain``,
    §4.3), are refused with ``invalid_request`` (§4.4.1)."""
    challenge = params.get("code_challenge")
    if challenge is None:
        raise InvalidRequest("code_challenge is required (PKCE with S256)")
    method = params.get("code_challenge_method")
    if method != pkce.METHOD:
        raise InvalidRequest("code_challenge_method must be S256 (plain is not supported)")
    if not pkce.is_valid_challenge(challenge):
        raise InvalidRequest("code_challenge is not a base64url SHA-256 (43 characters)")
    return challenge


def _prompt(value: str | None) -> frozenset[str]:
    """OpenID Connect Core §3.1.2.1: space-separated; ``none`` stands alone."""
    if value is None:
        return frozenset()
    prompts = frozenset(value.split(" "))
    if "" in prompts or prompts - PROMPTS:
        raise InvalidRequest("prompt must be none, login, consent or select_account")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values")
    return prompts


def _max_age(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise InvalidRequest("max_age must be a non-negative number of seconds")
    return int(value)


# -- after the user is known -----------------------------------------------------------------


def granted_scopes(requested: frozenset[str], user_scopes: frozenset[str]) -> frozenset[str]:
    """What the user gets: the requested scopes the user holds, and the protocol scopes the
    client asked for (the same rule the password grant applies, plus ``openid``/``profile``)."""
    return requested & (user_scopes | PROTOCOL_SCOPES)


def redirect_url(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    """``redirect_uri`` with ``params`` added to its query (RFC 6749 §4.1.2: a registered URI
    may have a query of its own, which is kept); None values are left out."""
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    return redirect_uri + ("&" if "?" in redirect_uri else "?") + extra


def error_redirect(
    request_target: str, issuer: str, error: KeyhouseError, state: str | None
) -> str:
    """The error response (RFC 6749 §4.1.2.1, RFC 9207 ``iss``) as the URL to send the user to."""
    return redirect_url(
        request_target,
        {
            "error": error.error,
            "error_description": error.description or None,
            "state": state,
            "iss": issuer,
        },
    )
