"""The drill's timeline as SVG geometry: pure functions from the report's ``timeline`` (see
:mod:`drill.series`) to positions, which the HTML template only lays out.

The picture, left to right in seconds since the load started: the load's requests per second
(a line) over stacked bars of the refusals the drill expected (revoked tokens) and of failures
by cause; a vertical marker for each key's publish, activate, retire and revoke time and for
each revocation request; below the chart, one lane per service with its first acceptance of
each kid (a circle) and its first refusal after each revocation (a cross).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

WIDTH = 960
LEFT, RIGHT = 64, 24
LABEL_ROWS, LABEL_ROW_HEIGHT, CHAR_WIDTH = 3, 13, 6.2
TOP = 24 + LABEL_ROWS * LABEL_ROW_HEIGHT
CHART_HEIGHT = 220
LANE_HEIGHT = 28
LANE_GAP = 36
BOTTOM = 28

REQUESTS_COLOUR = "#1f5fbf"
EXPECTED_COLOUR = "#b8b8b8"
CAUSE_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
OTHER_COLOUR = "#555555"
MAX_CAUSES = len(CAUSE_COLOURS)
KEY_MARKERS = {
    "publish": ("#2ca02c", "4 3"),
    "activate": ("#2ca02c", ""),
    "retire": ("#8a8a8a", "4 3"),
    "revoke": ("#d62728", ""),
}
ACTION_COLOUR = "#000000"
ACCEPT_COLOUR = "#2ca02c"
REFUSE_COLOUR = "#d62728"


@dataclass(frozen=True)
class Scale:
    """Maps ``domain`` (lo, hi) linearly onto ``range`` (lo, hi) (the range may descend)."""

    domain: tuple[float, float]
    range: tuple[float, float]

    def __call__(self, value: float) -> float:
        d0, d1 = self.domain
        r0, r1 = self.range
        if d1 == d0:
            return r0
        return round(r0 + (value - d0) * (r1 - r0) / (d1 - d0), 2)

    def contains(self, value: float) -> bool:
        return self.domain[0] <= value <= self.domain[1]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``value`` (1 for 0 or less)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def ticks(high: float, count: int = 8) -> list[float]:
    """Round tick values from 0 to ``high``, about ``count`` of them."""
    step = nice_ceiling(high / count) if high > 0 else 1.0
    n = math.floor(high / step + 1e-9)
    return [round(i * step, 6) for i in range(n + 1)]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` across the chart (a key's time, or a revocation request)."""

    x: float
    kind: str
    label: str
    colour: str
    dash: str
    # A short text above the chart ("activate 3f2a9c1d"), in the row at ``text_y``; "" none.
    text: str = ""
    text_y: float = 0.0


@dataclass(frozen=True)
class Mark:
    """A service's event in its lane: ``kind`` "accept" (circle) or "refuse" (cross)."""

    x: float
    y: float
    kind: str
    label: str
    colour: str


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    marks: list[Mark]


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: str
    shape: str  # "line", "bar", "dash", "circle", "cross"
    dash: str = ""


@dataclass(frozen=True)
class Geometry:
    width: float
    height: float
    left: float
    right: float
    chart_top: float
    chart_bottom: float
    x: Scale
    y: Scale
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    requests_points: str
    bars: list[Bar]
    markers: list[Marker]
    lanes: list[Lane]
    legend: list[LegendEntry]
    notes: list[str] = field(default_factory=list)


def _causes(failures: Mapping[str, Sequence[int]]) -> list[tuple[str, list[int], str]]:
    """The failure series to draw: the biggest causes each in its colour, the rest as one."""
    ranked = sorted(failures.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    drawn = [
        (cause, list(series), colour)
        for (cause, series), colour in zip(ranked[:MAX_CAUSES], CAUSE_COLOURS, strict=False)
    ]
    rest = ranked[MAX_CAUSES:]
    if rest:
        length = max(len(s) for _, s in rest)
        merged = [sum(s[i] for _, s in rest if i < len(s)) for i in range(length)]
        drawn.append((f"{len(rest)} other causes", merged, OTHER_COLOUR))
    return drawn


def place_labels(markers: Sequence[Marker], chart_top: float) -> list[Marker]:
    """The markers with their texts placed in rows above the chart, left to right: each text
    goes in the lowest row where it does not overlap the previous one (the row whose text ends
    first when none is free)."""
    ends = [-math.inf] * LABEL_ROWS
    placed: list[Marker] = []
    for marker in sorted(markers, key=lambda m: m.x):
        if not marker.text:
            placed.append(marker)
            continue
        free = [row for row in range(LABEL_ROWS) if ends[row] + 4 <= marker.x]
        row = free[0] if free else min(range(LABEL_ROWS), key=lambda r: ends[r])
        ends[row] = marker.x + 2 + len(marker.text) * CHAR_WIDTH
        text_y = chart_top - 4 - row * LABEL_ROW_HEIGHT
        placed.append(replace(marker, text_y=text_y))
    return placed


def geometry(timeline: Mapping[str, Any]) -> Geometry:
    """Every position of the timeline picture for the report's ``timeline`` section."""
    requests: list[int] = list(timeline.get("requests") or [])
    expected: list[int] = list(timeline.get("expected_refusals") or [])
    causes = _causes(timeline.get("failures") or {})
    duration = max(float(timeline.get("duration_s") or 0), len(requests), 1.0)
    services = list((timeline.get("first_accept") or {}).keys())
    for name in timeline.get("first_refusal") or {}:
        if name not in services:
            services.append(name)

    chart_top, chart_bottom = float(TOP), float(TOP + CHART_HEIGHT)
    lanes_top = chart_bottom + LANE_GAP
    height = lanes_top + LANE_HEIGHT * len(services) + BOTTOM
    x = Scale((0.0, duration), (float(LEFT), float(WIDTH - RIGHT)))
    stacked = [
        (expected[i] if i < len(expected) else 0) + sum(s[i] for _, s, _ in causes if i < len(s))
        for i in range(len(requests))
    ]
    y_high = nice_ceiling(max([*requests, *stacked, 1]))
    y = Scale((0.0, y_high), (chart_bottom, chart_top))

    # Bucket i holds the requests started in second [i, i+1): drawn at its middle.
    points = " ".join(f"{x(i + 0.5)},{y(n)}" for i, n in enumerate(requests))
    bars: list[Bar] = []
    bar_width = max(1.0, round(x(1) - x(0) - 2, 2))
    layers = [("refused as expected (revoked)", expected, EXPECTED_COLOUR), *causes]
    for i in range(len(requests)):
        base = 0
        for label, series, colour in layers:
            count = series[i] if i < len(series) else 0
            if count <= 0:
                continue
            top = y(base + count)
            bottom = y(base)
            bars.append(
                Bar(
                    x=round(x(i) + 1, 2),
                    y=top,
                    width=bar_width,
                    height=round(max(1.0, bottom - top), 2),
                    colour=colour,
                    title=f"{i}-{i + 1}s: {label}: {count}",
                )
            )
            base += count

    markers: list[Marker] = []
    notes: list[str] = []
    for key in timeline.get("keys") or []:
        kid = str(key.get("kid"))
        for kind, (colour, dash) in KEY_MARKERS.items():
            at = key.get(kind + "_s")
            if at is None:
                continue
            if not x.contains(at):
                continue
            text = f"{kind} {kid[:8]}"
            markers.append(Marker(x(at), kind, f"{kind} {kid}", colour, dash, text))
    for action in timeline.get("actions") or []:
        at = action.get("at_s")
        if at is not None and x.contains(at):
            label = f"{action['kind']} revocation requested: {action['subject']}"
            # A key's revocation is labelled by its revoke marker; a user's by this one.
            text = f"disable {action['subject'][:12]}" if action["kind"] == "user" else ""
            markers.append(Marker(x(at), "action", label, ACTION_COLOUR, "1 3", text))
    # Revocations drawn last, on top: a replacement key activates at the same instant.
    markers = sorted(place_labels(markers, chart_top), key=lambda m: m.kind == "revoke")

    lanes: list[Lane] = []
    accepts = timeline.get("first_accept") or {}
    refusals = timeline.get("first_refusal") or {}
    for index, name in enumerate(services):
        lane_y = lanes_top + LANE_HEIGHT * index + LANE_HEIGHT / 2
        marks: list[Mark] = []
        for kid, at in (accepts.get(name) or {}).items():
            if at is not None and x.contains(at):
                label = f"{name}: first acceptance of {kid} at {at:.2f}s"
                marks.append(Mark(x(at), lane_y, "accept", label, ACCEPT_COLOUR))
        for entry in refusals.get(name) or []:
            at = entry.get("at_s")
            if at is None:
                notes.append(f"{name}: no refusal after the {entry['revocation']} revocation")
            elif x.contains(at):
                label = (
                    f"{name}: first refusal after the {entry['revocation']} revocation at {at:.2f}s"
                )
                marks.append(Mark(x(at), lane_y, "refuse", label, REFUSE_COLOUR))
        lanes.append(Lane(name, lane_y, marks))

    legend = [
        LegendEntry("load requests/s", REQUESTS_COLOUR, "line"),
        LegendEntry("refused as expected (revoked)", EXPECTED_COLOUR, "bar"),
        *(LegendEntry(f"failed: {cause}", colour, "bar") for cause, _, colour in causes),
        *(
            LegendEntry(f"key {kind}", colour, "dash", dash)
            for kind, (colour, dash) in KEY_MARKERS.items()
        ),
        LegendEntry("revocation requested", ACTION_COLOUR, "dash", "1 3"),
        LegendEntry("first acceptance of a kid", ACCEPT_COLOUR, "circle"),
        LegendEntry("first refusal after a revocation", REFUSE_COLOUR, "cross"),
    ]
    return Geometry(
        width=WIDTH,
        height=height,
        left=LEFT,
        right=WIDTH - RIGHT,
        chart_top=chart_top,
        chart_bottom=chart_bottom,
        x=x,
        y=y,
        x_ticks=[(x(t), f"{t:g}s") for t in ticks(duration, 10)],
        y_ticks=[(y(t), f"{t:g}") for t in ticks(y_high, 5)],
        requests_points=points,
        bars=bars,
        markers=markers,
        lanes=lanes,
        legend=legend,
        notes=notes,
    )
