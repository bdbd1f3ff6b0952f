"""Strict ``application/x-www-form-urlencoded`` parsing for the OAuth endpoints (RFC 6749 §3.2)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from shared.errors import InvalidRequest

FORM_TYPE = "application/x-www-form-urlencoded"
# Never accepted from the query string (RFC 6749 §3.2, RFC 9700 §4.3.2): refused, never used.
SENSITIVE_PARAMETERS = frozenset(
    {"client_secret", "password", "refresh_token", "token", "assertion", "code"}
)
# No OAuth parameter may hold a control character (RFC 6749 Appendix A: the widest grammar,
# username and password, is %x09 / %x20-7E / %x80-...): refused here as invalid_request, before
# a NUL can reach the database (PostgreSQL raises on one in text). The client credentials and
# the scope are left to their own stricter checks, which answer with their own errors:
# invalid_client (throttled and audited, issuer/client_auth.py) and invalid_scope.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CHECKED_ELSEWHERE = frozenset({"client_id", "client_secret", "scope"})


def parse_form(body: bytes, content_type: str | None, query_string: str = "") -> dict[str, str]:
    """Decode the form, refusing other media types, duplicate parameters, control characters
    and secrets in the URL."""
    if query_string:
        names = {name for name, _ in parse_qsl(query_string, keep_blank_values=True)}
        if names & SENSITIVE_PARAMETERS:
            raise InvalidRequest("credentials must not be sent in the query string")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_TYPE}")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the request body is not a valid form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 §3.2: request and response parameters MUST NOT be included more than once.
            raise InvalidRequest(f"parameter {name!r} is repeated")
        if _CONTROL.search(name):
            raise InvalidRequest("a parameter name contains a control character")
        if _CONTROL.search(value) and name not in _CHECKED_ELSEWHERE:
            raise InvalidRequest(f"parameter {name[:40]!r} contains a control character")
        form[name] = value
    return form
