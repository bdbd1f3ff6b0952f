"""Property-based test of the issuer's form parser (issuer/forms.py, issue 13 point 5): arbitrary
and mutated bodies, content types and query strings give a form or InvalidRequest (400), never
another exception. bench/fuzz.py runs the same target for longer."""

from __future__ import annotations

from hypothesis import given

from tests.support.fuzz import FORM, TEST_SETTINGS


@TEST_SETTINGS
@given(FORM.strategy)
def test_form_parser_raises_only_keyhouse_errors(example: tuple[bytes, str | None, str]) -> None:
    FORM.check(example)
