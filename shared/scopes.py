"""OAuth scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens; no substring matching."""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.errors import InvalidScope

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def parse_scope(value: str | None) -> frozenset[str]:
    """Parse a scope string into a set of scope tokens; ``None`` or empty gives the empty set.

    Raises :class:`InvalidScope` for characters outside the RFC 6749 §3.3 grammar.
    """
    if not value:
        return frozenset()
    tokens = value.split(" ")
    result = set()
    for token in tokens:
        if token == "":
            continue  # tolerate repeated spaces
        if not _SCOPE_TOKEN.match(token):
            raise InvalidScope("scope contains an invalid character")
        result.add(token)
    return frozenset(result)


def format_scope(scopes: Iterable[str]) -> str:
    """Deterministic space-separated form (sorted), as put into tokens and responses."""
    return " ".join(sorted(set(scopes)))


def has_scopes(granted: Iterable[str], required: Iterable[str]) -> bool:
    """True when every required scope is granted, by exact token equality."""
    return set(required) <= set(granted)
