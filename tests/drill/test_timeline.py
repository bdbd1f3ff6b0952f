"""The timeline's geometry: scales, ticks, bars and markers at the right x."""

from __future__ import annotations

from typing import Any

import pytest

from drill.timeline import (
    ACCEPT_COLOUR,
    EXPECTED_COLOUR,
    LABEL_ROW_HEIGHT,
    LEFT,
    MAX_CAUSES,
    OTHER_COLOUR,
    REFUSE_COLOUR,
    RIGHT,
    WIDTH,
    Marker,
    Scale,
    geometry,
    nice_ceiling,
    place_labels,
    ticks,
)


def _timeline(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "duration_s": 10.0,
        "requests": [100, 200, 200, 150, 200, 200, 200, 200, 200, 180],
        "expected_refusals": [0] * 10,
        "failures": {},
        "keys": [],
        "actions": [],
        "first_accept": {"photos": {}, "contacts": {}},
        "first_refusal": {"photos": [], "contacts": []},
    }
    base.update(extra)
    return base


def test_scale_maps_the_domain_linearly_and_may_descend() -> None:
    x = Scale((0.0, 10.0), (64.0, 936.0))
    assert x(0) == 64
    assert x(10) == 936
    assert x(5) == 500
    y = Scale((0.0, 200.0), (260.0, 40.0))
    assert y(0) == 260
    assert y(200) == 40
    assert y(100) == 150
    assert Scale((3.0, 3.0), (1.0, 9.0))(3) == 1  # an empty domain maps to the range start
    assert x.contains(10)
    assert not x.contains(10.01)
    assert not x.contains(-0.5)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (-3, 1), (0.3, 0.5), (1, 1), (1.01, 2), (3, 5), (7, 10), (200, 200), (201, 500)],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == ceiling


def test_ticks_are_round_and_end_at_or_below_the_top() -> None:
    assert ticks(10, 10) == [float(i) for i in range(11)]
    assert ticks(200, 5) == [0, 50, 100, 150, 200]
    assert ticks(37, 8) == [0, 5, 10, 15, 20, 25, 30, 35]


def test_requests_line_and_axes() -> None:
    g = geometry(_timeline())
    assert g.x.domain == (0, 10)
    assert g.x.range == (LEFT, WIDTH - RIGHT)
    assert g.y.domain == (0, 200)  # the busiest second, rounded up
    assert g.y(200) == g.chart_top
    assert g.y(0) == g.chart_bottom
    points = [tuple(map(float, p.split(","))) for p in g.requests_points.split()]
    assert len(points) == 10
    # Second i's requests are drawn at the middle of [i, i+1).
    assert points[0] == (g.x(0.5), g.y(100))
    assert points[3] == (g.x(3.5), g.y(150))
    assert [label for _, label in g.x_ticks][:3] == ["0s", "1s", "2s"]
    assert g.bars == []
    assert g.markers == []


def test_failure_bars_stack_expected_refusals_under_the_causes() -> None:
    g = geometry(
        _timeline(
            expected_refusals=[0, 0, 0, 40, 0, 0, 0, 0, 0, 0],
            failures={"photos: 401 invalid_token": [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]},
        )
    )
    expected, failed = g.bars
    assert expected.colour == EXPECTED_COLOUR
    assert expected.x == g.x(3) + 1
    assert expected.y == g.y(40)
    assert expected.y + expected.height == g.y(0)
    assert failed.x == expected.x
    assert failed.y == g.y(50)  # on top of the 40 expected refusals
    assert failed.y + failed.height == pytest.approx(g.y(40))
    assert failed.title == "3-4s: photos: 401 invalid_token: 10"
    labels = [e.label for e in g.legend]
    assert "failed: photos: 401 invalid_token" in labels


def test_beyond_the_biggest_causes_the_rest_is_one_series() -> None:
    failures = {f"cause {i}": [i + 1] + [0] * 9 for i in range(MAX_CAUSES + 2)}
    g = geometry(_timeline(failures=failures))
    colours = [b.colour for b in g.bars]
    assert len(colours) == MAX_CAUSES + 1
    assert colours[-1] == OTHER_COLOUR
    other = g.bars[-1]
    assert other.title == "0-1s: 2 other causes: 3"  # cause 0 and cause 1: 1 + 2
    assert any(e.label == "failed: 2 other causes" for e in g.legend)


def test_key_and_action_markers_at_their_times_outside_the_window_left_out() -> None:
    g = geometry(
        _timeline(
            keys=[
                {
                    "kid": "k1",
                    "publish_s": -300.0,
                    "activate_s": -290.0,
                    "retire_s": 4.0,
                    "revoke_s": None,
                },
                {
                    "kid": "k2",
                    "publish_s": 1.0,
                    "activate_s": 3.0,
                    "retire_s": None,
                    "revoke_s": 7.5,
                },
            ],
            actions=[{"kind": "key", "subject": "k2", "at_s": 7.4}],
        )
    )
    by_label = {m.label: m for m in g.markers}
    assert set(by_label) == {
        "retire k1",
        "publish k2",
        "activate k2",
        "revoke k2",
        "key revocation requested: k2",
    }
    assert by_label["publish k2"].x == g.x(1.0)
    assert by_label["activate k2"].x == g.x(3.0)
    assert by_label["revoke k2"].x == g.x(7.5)
    assert by_label["retire k1"].x == g.x(4.0)
    assert by_label["key revocation requested: k2"].x == g.x(7.4)
    assert by_label["publish k2"].dash
    assert not by_label["activate k2"].dash


def test_service_lanes_mark_first_acceptance_and_first_refusal() -> None:
    g = geometry(
        _timeline(
            first_accept={"photos": {"k1": 0.1, "k2": 3.2}, "contacts": {"k1": 0.2}},
            first_refusal={
                "photos": [{"revocation": "user ada", "at_s": 5.05}],
                "contacts": [{"revocation": "user ada", "at_s": None}],
            },
        )
    )
    photos, contacts = g.lanes
    assert (photos.name, contacts.name) == ("photos", "contacts")
    assert photos.y < contacts.y
    assert photos.y > g.chart_bottom
    accepts = [m for m in photos.marks if m.kind == "accept"]
    refusals = [m for m in photos.marks if m.kind == "refuse"]
    assert [m.x for m in accepts] == [g.x(0.1), g.x(3.2)]
    assert all(m.colour == ACCEPT_COLOUR and m.y == photos.y for m in accepts)
    assert [m.x for m in refusals] == [g.x(5.05)]
    assert refusals[0].colour == REFUSE_COLOUR
    assert "first refusal after the user ada revocation at 5.05s" in refusals[0].label
    assert [m.kind for m in contacts.marks] == ["accept"]
    assert g.notes == ["contacts: no refusal after the user ada revocation"]
    assert g.height > contacts.y


def test_an_empty_timeline_still_draws() -> None:
    g = geometry({"duration_s": 0, "requests": []})
    assert g.x.domain == (0, 1)
    assert g.requests_points == ""
    assert g.lanes == []
    assert {e.shape for e in g.legend} == {"line", "bar", "dash", "circle", "cross"}


def test_marker_texts_take_rows_so_they_do_not_overlap() -> None:
    chart_top = 100.0
    markers = [
        Marker(300.0, "activate", "activate k2", "#000", "", "activate k2"),
        Marker(100.0, "publish", "publish k2", "#000", "", "publish k2"),
        Marker(104.0, "retire", "retire k1", "#000", "", "retire k1"),
        Marker(150.0, "action", "key revocation requested: k2", "#000", "1 3", ""),
    ]
    placed = {m.label: m for m in place_labels(markers, chart_top)}
    row0 = chart_top - 4
    assert placed["publish k2"].text_y == row0  # leftmost: the lowest row
    assert placed["retire k1"].text_y == row0 - LABEL_ROW_HEIGHT  # would overlap: next row
    assert placed["activate k2"].text_y == row0  # far enough right: back to the lowest row
    assert placed["key revocation requested: k2"].text_y == 0  # no text, not placed
    assert [m.x for m in place_labels(markers, chart_top)] == [100.0, 104.0, 150.0, 300.0]


def test_every_row_taken_the_text_goes_where_the_row_ends_first() -> None:
    markers = [Marker(100.0 + i, "publish", f"m{i}", "#000", "", f"publish k{i}") for i in range(4)]
    rows = [m.text_y for m in place_labels(markers, 100.0)]
    assert rows[:3] == [96.0, 96.0 - LABEL_ROW_HEIGHT, 96.0 - 2 * LABEL_ROW_HEIGHT]
    assert rows[3] == 96.0


def test_a_revoke_marker_is_drawn_over_the_activation_at_the_same_instant() -> None:
    keys = [
        {"kid": "old", "publish_s": None, "activate_s": None, "retire_s": None, "revoke_s": 5.0},
        {"kid": "new", "publish_s": 5.0, "activate_s": 5.0, "retire_s": None, "revoke_s": None},
    ]
    g = geometry(_timeline(keys=keys))
    assert [m.kind for m in g.markers][-1] == "revoke"
    assert {m.x for m in g.markers} == {g.x(5.0)}
