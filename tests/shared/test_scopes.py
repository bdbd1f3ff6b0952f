from __future__ import annotations

import pytest

from shared.errors import InvalidScope
from shared.scopes import format_scope, parse_scope


def test_parse_and_format() -> None:
    assert parse_scope("b a a") == frozenset({"a", "b"})
    assert parse_scope("photos:read") == frozenset({"photos:read"})
    assert parse_scope(None) == frozenset() == parse_scope("")
    assert format_scope({"b", "a"}) == "a b"
    assert parse_scope(format_scope({"b", "a", "!#[]~"})) == {"a", "b", "!#[]~"}


def test_case_sensitive_and_no_substrings() -> None:
    """Parsed scopes are compared as whole tokens (as the resource service's ``require_scope``
    and the issuer's ``resolve_scope`` do, by set membership)."""
    assert "Photos:read" not in parse_scope("photos:read")
    assert "photos" not in parse_scope("photos:read")
    assert "photos:read" not in parse_scope("photos")
    assert "photos:read" in parse_scope("photos:read x")


@pytest.mark.parametrize(
    "bad", ['a"b', "a\\b", "tab\there", "é", "a\nb", "a\x00", "a\x7f", "\u00a0", "a\u2003b"]
)
def test_invalid_characters(bad: str) -> None:
    with pytest.raises(InvalidScope, match="invalid character"):
        parse_scope(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "photos:read  photos:write",  # two spaces
        " photos:read",  # leading
        "photos:read ",  # trailing
        " ",
        "  ",
        "a   b",
        " a b ",
    ],
)
def test_stray_spaces_are_refused(bad: str) -> None:
    """RFC 6749 §3.3: scope = scope-token *( SP scope-token ); a space only between tokens."""
    with pytest.raises(InvalidScope, match="exactly one space"):
        parse_scope(bad)


@pytest.mark.parametrize("bad", ["photos:read\n", "photos:read\r\n", "\nphotos:read"])
def test_a_newline_at_either_end_is_refused(bad: str) -> None:
    # ``re.match(r"^...$")`` lets a trailing newline through; the grammar does not.
    with pytest.raises(InvalidScope):
        parse_scope(bad)


def test_the_error_is_invalid_scope_and_does_not_echo_the_input() -> None:
    with pytest.raises(InvalidScope) as caught:
        parse_scope('secret-ish "value"  x')
    assert caught.value.error == "invalid_scope"
    assert caught.value.status_code == 400
    assert "secret" not in caught.value.description
