"""OAuth scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens; no substring matching.

The grammar is strict (RFC 6749 §3.3, Appendix A.4)::

    scope       = scope-token *( SP scope-token )
    scope-token = 1*( %x21 / %x23-5B / %x5D-7E )

so exactly one space separates two tokens: a leading or trailing space, two spaces in a row, or
any other whitespace is refused with ``invalid_scope``. :func:`parse_scope` is the one parser:
the token endpoint (every grant), the CLI's ``--scope`` and the stored rows all go through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.errors import InvalidScope

_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def parse_scope(value: str | None) -> frozenset[str]:
    """Parse a scope string into a set of scope tokens; ``None`` or ``""`` gives the empty set.

    Raises :class:`InvalidScope` for anything outside the RFC 6749 §3.3 grammar: a character
    a scope-token may not hold, or a space that does not separate two tokens. A token given
    twice counts once.
    """
    if not value:
        return frozenset()
    if _SCOPE.fullmatch(value) is None:
        raise InvalidScope(_why(value))
    return frozenset(value.split(" "))


def _why(value: str) -> str:
    """A description of what is wrong with ``value`` (safe to show: no echo of the input)."""
    if any(token and _SCOPE_TOKEN.fullmatch(token) is None for token in value.split(" ")):
        return "scope contains an invalid character"
    return "scope tokens must be separated by exactly one space, with none before or after"


def format_scope(scopes: Iterable[str]) -> str:
    """Deterministic space-separated form (sorted), as put into tokens and responses."""
    return " ".join(sorted(set(scopes)))
