"""Property-based test of the resource service's POST /NAME body parser (issue 13 point 5):
arbitrary and mutated bodies and content types give a title that can be stored and served, or
InvalidRequest (400), never another exception. bench/fuzz.py runs the same target for longer."""

from __future__ import annotations

import pytest
from hypothesis import given

from resource_service.app import TITLE_REQUIRED, check_json_media, parse_title
from shared.errors import InvalidRequest
from tests.support.fuzz import BODY, TEST_SETTINGS


@TEST_SETTINGS
@given(BODY.strategy)
def test_body_parser_raises_only_keyhouse_errors(example: tuple[str | None, bytes]) -> None:
    BODY.check(example)


def test_the_body_check_passes_a_valid_body() -> None:
    check_json_media("application/json; charset=utf-8")
    assert parse_title(b'{"title": "caf\\u00e9 \\ud83d\\ude00"}') == "caf\u00e9 \U0001f600"


@pytest.mark.parametrize(
    "body", [b'{"title": ""}', b'{"title": "  "}', b"{}", b"[]", b'{"title": null}', b'"t"']
)
def test_title_error_reads_properly(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_title(body)
    assert info.value.description == TITLE_REQUIRED
    assert "?" not in info.value.description
    assert "'title'" in info.value.description
