"""Ratios on a drifting machine, and whether they meet their targets (pure: no process, no I/O).

The speed of a shared machine drifts by tens of percent within minutes; measured far apart, the
two sides of a ratio would compare two different machines. So every ratio is measured as
B A B A ... A B: each A run is divided by the mean of the two B runs around it, and the ratio
reported is the median of those (``measure_ratio``). ``ratio_row`` turns one into a report row,
``exit_status`` says whether the run met every target.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bench.harness.config import Row


class Rated(Protocol):
    """A measured run: a wrk result, or anything else with a rate."""

    @property
    def rps(self) -> float: ...

    def short(self) -> str: ...


A = TypeVar("A")
R = TypeVar("R", bound=Rated)


@dataclass(frozen=True)
class Target:
    """``ratio OP value``, e.g. Target(">=", 0.75)."""

    op: str  # ">=" or ">"
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", ">"):
            raise ValueError(f"unknown comparison {self.op!r}")

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio > self.value

    @property
    def text(self) -> str:
        return f"{self.op} {self.value}"


@dataclass
class Alternation:
    """A measured against B as B A B A ... A B (``b`` has one run more than ``a``)."""

    a: list[float]
    b: list[float]

    @property
    def ratios(self) -> list[float]:
        """Each A run over the mean of the two B runs around it."""
        return [a / self.b_around(i) for i, a in enumerate(self.a)]

    @property
    def ratio(self) -> float:
        # The lower median: with an even number of runs, the worse of the two middle ones (the
        # run the table shows), never an average of two runs.
        return statistics.median_low(self.ratios)

    @property
    def median_index(self) -> int:
        """Which A run gave the reported ratio."""
        return self.ratios.index(self.ratio)

    def b_around(self, i: int) -> float:
        return (self.b[i] + self.b[i + 1]) / 2

    def note(self) -> str:
        runs = ", ".join(f"{r:.2f}" for r in self.ratios)
        return f"alternated B A B ({len(self.a)} A runs); ratios {runs}; the median run is shown"


def alternate(
    rounds: int, run_a: Callable[[int], float], run_b: Callable[[int], float]
) -> Alternation:
    """Measures B, then ``rounds`` times A and B. Each callable gets its run's index (0 first:
    warm up then) and returns a rate."""
    b = [run_b(0)]
    a: list[float] = []
    for i in range(max(1, rounds)):
        a.append(run_a(i))
        b.append(run_b(i + 1))
    return Alternation(a, b)


@dataclass
class Measured(Generic[A]):
    """An alternation and what each of its A runs returned."""

    alt: Alternation
    runs: list[A]

    @property
    def ratio(self) -> float:
        return self.alt.ratio

    @property
    def median_run(self) -> A:
        """The A run whose ratio is the reported one."""
        return self.runs[self.alt.median_index]

    @property
    def reference(self) -> float:
        """The B rate the reported ratio divides by."""
        return self.alt.b_around(self.alt.median_index)


def measure_ratio(
    rounds: int,
    run_a: Callable[[int], A],
    run_b: Callable[[int], float],
    rate: Callable[[A], float],
) -> Measured[A]:
    """``alternate`` with A runs that return more than a rate: ``rate(run)`` is what the ratio
    uses, and every run is kept (``median_run`` is the one the report shows)."""
    runs: list[A] = []

    def a(i: int) -> float:
        runs.append(run_a(i))
        return rate(runs[-1])

    return Measured(alternate(rounds, a, run_b), runs)


def rps(run: Rated) -> float:
    return run.rps


def not_measured_row(scenario: str, name: str, why: str, target: Target | None) -> Row:
    """A row that says what was not measured and why: neither a pass nor a miss (its target,
    if it has one, shown as not checked)."""
    return Row(
        scenario,
        name,
        f"not measured: {why}",
        target=f"{target.text} (not checked)" if target else "(report)",
    )


def ratio_row(
    scenario: str,
    name: str,
    m: Measured[R],
    target: Target | None,
    *,
    target_text: str = "(report)",
    unit: str = "req/s",
    note: str = "",
) -> Row:
    """The report row of a measured ratio: the median A run against the B rate around it; the
    target's verdict (none without a target, ``target_text`` instead)."""
    return Row(
        scenario,
        name,
        m.median_run.short(),
        f"{m.reference:,.0f} {unit}",
        round(m.ratio, 3),
        target.text if target else target_text,
        target.met(m.ratio) if target else None,
        note=note + m.alt.note(),
    )


def missed(rows: Sequence[Row]) -> list[Row]:
    """The rows whose target was missed."""
    return [r for r in rows if r.passed is False]


def exit_status(rows: Sequence[Row], failed: Sequence[object]) -> int:
    """0 when every selected scenario ran and met its targets; 1 when one failed to run or a
    target was missed (rows without a target count neither way)."""
    return 1 if failed or missed(rows) else 0
