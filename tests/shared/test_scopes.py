from __future__ import annotations

import pytest

from shared.errors import InvalidScope
from shared.scopes import format_scope, has_scopes, parse_scope


def test_parse_and_format() -> None:
    assert parse_scope("b a  a") == frozenset({"a", "b"})
    assert parse_scope(None) == frozenset() == parse_scope("")
    assert format_scope({"b", "a"}) == "a b"


def test_case_sensitive_and_no_substrings() -> None:
    assert not has_scopes({"photos:read"}, {"Photos:read"})
    assert not has_scopes({"photos:read"}, {"photos"})
    assert not has_scopes({"photos"}, {"photos:read"})
    assert has_scopes({"photos:read", "x"}, {"photos:read"})


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "tab\there", "é"])
def test_invalid_characters(bad: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(bad)
