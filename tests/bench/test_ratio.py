"""bench/harness/ratio.py: the alternated ratios, their medians and the pass/fail verdicts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.harness.config import Row
from bench.harness.ratio import (
    Alternation,
    Target,
    alternate,
    exit_status,
    measure_ratio,
    missed,
    ratio_row,
)


@dataclass
class Run:
    rps: float

    def short(self) -> str:
        return f"{self.rps:,.0f} req/s"


def test_each_a_run_is_divided_by_the_two_b_runs_around_it() -> None:
    alt = Alternation(a=[90.0, 60.0, 120.0], b=[100.0, 80.0, 120.0, 100.0])
    assert alt.ratios == pytest.approx([1.0, 0.6, 1.0909], abs=1e-4)
    assert alt.b_around(1) == 100.0
    assert alt.ratio == pytest.approx(1.0)
    assert alt.median_index == 0


def test_the_median_is_the_lower_one_of_an_even_count_never_an_average() -> None:
    alt = Alternation(a=[50.0, 70.0, 80.0, 60.0], b=[100.0] * 5)
    assert alt.ratio == 0.6  # not 0.65
    assert alt.median_index == 3
    assert "ratios 0.50, 0.70, 0.80, 0.60" in alt.note()


def test_alternate_runs_b_a_b_a_b_with_each_runs_index() -> None:
    calls: list[str] = []

    def run_a(i: int) -> float:
        calls.append(f"A{i}")
        return 1.0

    def run_b(i: int) -> float:
        calls.append(f"B{i}")
        return 2.0

    alt = alternate(2, run_a, run_b)
    assert calls == ["B0", "A0", "B1", "A1", "B2"]
    assert (alt.a, alt.b) == ([1.0, 1.0], [2.0, 2.0, 2.0])
    assert alternate(0, run_a, run_b).a == [1.0]  # at least one A run


def test_measure_ratio_keeps_the_runs_and_shows_the_median_one() -> None:
    a_runs = iter([Run(45.0), Run(80.0), Run(30.0)])
    b_rates = iter([100.0, 100.0, 60.0, 100.0])
    m = measure_ratio(3, lambda _i: next(a_runs), lambda _i: next(b_rates), lambda r: r.rps)
    assert [r.rps for r in m.runs] == [45.0, 80.0, 30.0]
    assert m.alt.ratios == pytest.approx([0.45, 1.0, 0.375])
    assert m.median_run.rps == 45.0
    assert m.reference == 100.0
    assert m.ratio == pytest.approx(0.45)


def test_targets() -> None:
    at_least = Target(">=", 0.75)
    above = Target(">", 1.0)
    assert at_least.met(0.75)
    assert not at_least.met(0.7499)
    assert not above.met(1.0)
    assert above.met(1.01)
    assert (at_least.text, above.text) == (">= 0.75", "> 1.0")
    with pytest.raises(ValueError, match="comparison"):
        Target("<", 1.0)


def test_ratio_row_reports_the_median_run_against_its_own_reference() -> None:
    a_runs = iter([Run(80.0), Run(70.0), Run(90.0)])
    b_rates = iter([100.0, 100.0, 100.0, 120.0])
    m = measure_ratio(3, lambda _i: next(a_runs), lambda _i: next(b_rates), lambda r: r.rps)
    row = ratio_row("2", "x", m, Target(">=", 0.75))
    assert m.alt.ratios == pytest.approx([0.8, 0.7, 0.8182], abs=1e-4)
    assert row.measured == "80 req/s"
    assert row.reference == "100 req/s"
    assert row.ratio == 0.8
    assert (row.target, row.passed) == (">= 0.75", True)
    assert row.note.startswith("alternated B A B (3 A runs)")
    missed_row = ratio_row("2", "x", m, Target(">=", 0.85))
    assert missed_row.passed is False
    report_only = ratio_row("5", "x", m, None, target_text="(report)")
    assert (report_only.target, report_only.passed) == ("(report)", None)


def test_the_run_fails_when_a_target_is_missed_or_a_scenario_did_not_run() -> None:
    met = Row("1", "met", "x", passed=True)
    reference = Row("0", "ceiling", "x")  # no target: counts neither way
    miss = Row("4", "missed", "x", passed=False)
    assert exit_status([met, reference], []) == 0
    assert exit_status([met, reference, miss], []) == 1
    assert missed([met, reference, miss]) == [miss]
    assert exit_status([met], [("3", "baseline", "server did not start")]) == 1
