"""One small exception hierarchy for every protocol error Keyhouse can answer with.

Each error carries its RFC error code (``error``), a human-readable ``description`` that is safe
to show to the caller, and the HTTP ``status_code``. Each app has exactly one handler that turns
these into a JSON body (RFC 6749 §5.2, RFC 6750 §3) plus headers; nothing else formats errors.
"""

from __future__ import annotations

import re
from typing import ClassVar


class KeyhouseError(Exception):
    """Base of every error Keyhouse turns into an HTTP response."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 500

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


class KeysUnavailable(KeyhouseError):
    """No verification keys could be obtained (cold start, or the last good set expired): 503."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str = "", *, retry_after: int = 5) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


# --- Configuration and operator errors ------------------------------------------------------


class ConfigurationError(KeyhouseError):
    """Bad settings or CLI input; the CLI prints ``description`` on one line and exits 2."""

    error = "configuration_error"
    status_code = 500


class JWKSError(KeyhouseError):
    """A JWKS document or fetch was unusable. Never shown to a token holder as such."""

    error = "jwks_error"
    status_code = 503
