"""Strict ``application/x-www-form-urlencoded`` parsing for the OAuth endpoints (RFC 6749 §3.2)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from shared.errors import InvalidRequest

FORM_TYPE = "application/x-www-form-urlencoded"
# Never accepted from the query string (RFC 6749 §3.2, RFC 9700 §4.3.2): refused, never used.
SENSITIVE_PARAMETERS = frozenset(
    {"client_secret", "password", "refresh_token", "token", "assertion", "code"}
)


def parse_form(body: bytes, content_type: str | None, query_string: str = "") -> dict[str, str]:
    """Decode the form, refusing other media types, duplicate parameters and secrets in the URL."""
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
        form[name] = value
    return form
