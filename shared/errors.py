"""One small exception hierarchy for every protocol error Keyhouse can answer with, and the one
function that turns an error into an HTTP answer.

Each error carries its RFC error code (``error``), a human-readable ``description`` and the HTTP
``status_code``. :func:`render_error` turns it into status, headers and a JSON body (RFC 6749
§5.2, RFC 6750 §3); both apps' handlers call it, and nothing else formats errors. An error whose
class says ``expose = False`` (a server-side failure: a wrong secret key, an unusable store)
shows the client a generic description; its detail goes to the log only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

logger = logging.getLogger("keyhouse.errors")


class KeyhouseError(Exception):
    """Base of every error Keyhouse turns into an HTTP response."""

    error: ClassVar[str] = "server_error"
    status_code: int = 500  # per class; HTTPStatusError sets it per instance
    expose: ClassVar[bool] = True  # False: the client sees GENERIC_DESCRIPTION, the log the rest

    def __init__(self, description: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description or self.error)
        self.description = _safe_description(description)
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


def _safe_description(text: str) -> str:
    """Restrict descriptions to the characters RFC 6749 §5.2 allows (%x20-21 / %x23-5B / %x5D-7E).

    Descriptions also go into ``WWW-Authenticate`` quoted strings, so quotes and backslashes
    must never appear; anything else is replaced, and the text is bounded.
    """
    return _UNSAFE.sub("?", text[:200])


_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


# --- RFC 6749 §5.2: token endpoint errors -------------------------------------------------


class InvalidRequest(KeyhouseError):
    error = "invalid_request"
    status_code = 400


class InvalidClient(KeyhouseError):
    """Client authentication failed (RFC 6749 §5.2): 401 with a ``WWW-Authenticate`` challenge."""

    error = "invalid_client"
    status_code = 401


class InvalidGrant(KeyhouseError):
    error = "invalid_grant"
    status_code = 400


class UnauthorizedClient(KeyhouseError):
    error = "unauthorized_client"
    status_code = 400


class UnsupportedGrantType(KeyhouseError):
    error = "unsupported_grant_type"
    status_code = 400


class InvalidScope(KeyhouseError):
    error = "invalid_scope"
    status_code = 400


class InvalidTarget(KeyhouseError):
    """RFC 8707 §2: the requested resource/audience is not allowed for this client."""

    error = "invalid_target"
    status_code = 400


class UnsupportedTokenType(KeyhouseError):
    """RFC 7009 §2.2.1."""

    error = "unsupported_token_type"
    status_code = 400


class SlowDown(KeyhouseError):
    """Too many failed attempts: 429 with ``Retry-After``."""

    error = "slow_down"
    status_code = 429


class RequestTooLarge(KeyhouseError):
    error = "invalid_request"
    status_code = 413


class MethodNotAllowed(KeyhouseError):
    error = "invalid_request"
    status_code = 405


class NotFound(KeyhouseError):
    error = "not_found"
    status_code = 404


# --- RFC 6750 §3.1: resource server errors --------------------------------------------------


class MissingToken(KeyhouseError):
    """No credentials at all: RFC 6750 §3.1 says answer 401 with no error code."""

    error = "missing_token"
    status_code = 401

    def to_dict(self) -> dict[str, str]:
        return {"error": "invalid_request", "error_description": self.description}


class InvalidToken(KeyhouseError):
    error = "invalid_token"
    status_code = 401


class InsufficientScope(KeyhouseError):
    error = "insufficient_scope"
    status_code = 403

    def __init__(self, description: str = "", *, scope: str = "") -> None:
        super().__init__(description)
        self.scope = scope


class TemporarilyUnavailable(KeyhouseError):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``: the server cannot answer now (its database
    is unreachable, say) and may later: 503 with ``Retry-After`` (seconds)."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str = "", *, retry_after: int = 5) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class KeysUnavailable(TemporarilyUnavailable):
    """No verification keys could be obtained (cold start, or the last good set expired): 503."""


# --- Configuration and operator errors ------------------------------------------------------


class ConfigurationError(KeyhouseError):
    """Bad settings or CLI input; the CLI prints ``description`` on one line and exits 2.

    Met while serving a request (a wrong secret key, a missing store), it is the server's fault:
    the client is told no more than "internal error".
    """

    error = "configuration_error"
    status_code = 500
    expose = False


class JWKSError(KeyhouseError):
    """A JWKS document or fetch was unusable. Never shown to a token holder as such."""

    error = "jwks_error"
    status_code = 503
    expose = False


class ServerError(KeyhouseError):
    """The answer to an unexpected exception (a bug, a database failure): ``internal error``."""

    error = "server_error"
    status_code = 500


class HTTPStatusError(KeyhouseError):
    """A refusal the web framework decided, with its own status (see :func:`error_for_status`)."""

    error = "invalid_request"

    def __init__(
        self, status_code: int, description: str = "", *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(description, headers=dict(headers or {}))
        self.status_code = status_code


def error_for_status(
    status_code: int, description: str, headers: Mapping[str, str] | None = None
) -> KeyhouseError:
    """The error for a status a web framework chose itself (its router's 404 and 405)."""
    if status_code == NotFound.status_code:
        return NotFound(description, headers=dict(headers or {}))
    if status_code == MethodNotAllowed.status_code:
        return MethodNotAllowed(description, headers=dict(headers or {}))
    return HTTPStatusError(status_code, description, headers=headers)


# --- The one renderer ------------------------------------------------------------------------

GENERIC_DESCRIPTION = "internal error"
NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = 'Basic realm="keyhouse"'
# RFC 6750 §3.1: the errors a bearer challenge names (a request with no token names none).
_BEARER_ERRORS = frozenset({"invalid_token", "invalid_request", "insufficient_scope"})


class ErrorResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def render_error(
    exc: KeyhouseError, *, bearer_realm: str | None = None, log: logging.Logger = logger
) -> ErrorResponse:
    """Status, headers and JSON body for ``exc``: the only way an error becomes an answer.

    * Every error answer says ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 6749
      §5.1), next to the error's own headers (``Retry-After``, ``Allow``).
    * Failed client authentication (``invalid_client``) challenges with HTTP Basic (§5.2).
    * On a bearer-protected resource (``bearer_realm``, RFC 6750 §3): no token at all is a bare
      ``Bearer realm=...`` challenge; a bad request, a bad token or a missing scope names its
      error and description, and the missing ``scope``. Other errors carry no challenge.
    * ``expose = False`` (a server-side failure): the body says ``server_error`` and
      ``internal error``; the detail is logged to ``log`` with its traceback, never sent.
    """
    headers = {**NO_STORE, **exc.headers, "Content-Type": "application/json"}
    if not exc.expose:
        log.error("%d %s: %s", exc.status_code, exc.error, exc, exc_info=exc)
        generic = ServerError(GENERIC_DESCRIPTION).to_dict()
        return ErrorResponse(exc.status_code, headers, _json(generic))
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    elif bearer_realm is not None:
        challenge = _bearer_challenge(exc, bearer_realm)
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
    return ErrorResponse(exc.status_code, headers, _json(exc.to_dict()))


def _bearer_challenge(exc: KeyhouseError, realm: str) -> str | None:
    if isinstance(exc, MissingToken):
        return f'Bearer realm="{realm}"'
    if exc.error not in _BEARER_ERRORS or exc.status_code not in (400, 401, 403):
        return None
    challenge = (
        f'Bearer realm="{realm}", error="{exc.error}", error_description="{exc.description}"'
    )
    scope = exc.scope if isinstance(exc, InsufficientScope) else ""
    if scope:
        challenge += f', scope="{scope}"'
    return challenge


def _json(body: Mapping[str, str]) -> bytes:
    # As Starlette's JSONResponse renders it.
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def log_unexpected(log: logging.Logger, method: str, path: str, exc: BaseException) -> None:
    """An exception no handler expected, met while serving ``method path``.

    Its class, the method and the path at ERROR; its message and traceback at DEBUG only: a
    foreign exception's message may quote the request (credentials included). The request
    itself is never logged.
    """
    log.error("unexpected error on %s %s: %s", method, path, type(exc).__qualname__)
    log.debug("unexpected error on %s %s", method, path, exc_info=exc)
