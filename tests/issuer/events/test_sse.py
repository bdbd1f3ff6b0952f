"""issuer/events/sse.py: the message framing and the resume position (one negative test per
rule of ``resume_after``)."""

from __future__ import annotations

import pytest

from issuer.events import sse
from shared.errors import InvalidRequest


def test_message_framing() -> None:
    assert sse.message(42, "a.b.c") == b"id: 42\nevent: set\ndata: a.b.c\n\n"
    assert sse.KEEPALIVE == b": keepalive\n\n"


def test_no_resume_point() -> None:
    assert sse.resume_after(None, None) is None


def test_last_event_id_wins_over_after() -> None:
    assert sse.resume_after("7", "3") == 7
    assert sse.resume_after(None, "3") == 3
    assert sse.resume_after(" 0 ", None) == 0
    assert sse.resume_after(str(sse.MAX_SEQ), None) == sse.MAX_SEQ


@pytest.mark.parametrize("value", ["", " ", "-1", "+1", "1.0", "0x10", "1e3", "١٢", "12x"])
def test_not_a_decimal_number(value: str) -> None:
    with pytest.raises(InvalidRequest, match="Last-Event-ID must be an event id"):
        sse.resume_after(value, None)


def test_after_is_named_in_its_error() -> None:
    with pytest.raises(InvalidRequest, match="after must be an event id"):
        sse.resume_after(None, "abc")


@pytest.mark.parametrize("value", [str(sse.MAX_SEQ + 1), "9" * 20])
def test_too_large(value: str) -> None:
    with pytest.raises(InvalidRequest):
        sse.resume_after(value, None)
