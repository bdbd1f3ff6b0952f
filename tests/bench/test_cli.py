"""bench/cli.py: ./scripts/bench's exit status follows the targets (a missed target is a
failure, not a line in a report nobody reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli
from bench.harness.config import BenchError, Context, Row, Scenario


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scenario: Scenario) -> int:
    """``python -m bench --quick --only fake`` with ``scenario`` as the only one there is
    (and no second spent measuring how busy the machine is)."""
    monkeypatch.setattr(cli, "SCENARIOS", {"fake": scenario})
    monkeypatch.setattr(cli, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(cli, "machine_info", lambda: {
        "uname_a": "Linux test", "cpu_model": "test", "cpus": "2", "memory": "1 GiB",
        "load_average_at_start": "0.1 0.1 0.1", "cpu_busy_before_start": "1%",
    })  # fmt: skip
    monkeypatch.setattr(cli, "versions", lambda: {"python": "3"})
    out = tmp_path / "report.md"
    args = ["--quick", "--only", "fake", "--out", str(out), "--json-out", str(tmp_path / "r.json")]
    status = cli.main(args)
    assert out.read_text().startswith("# Benchmarks")
    return status


def _adding(*rows: Row) -> Scenario:
    def run(ctx: Context) -> None:
        """A scenario that adds the given rows."""
        for row in rows:
            ctx.add(row)

    return Scenario("9", run, needs_wrk=False)


def test_a_run_that_meets_its_targets_exits_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scenario = _adding(Row("9", "met", "x", passed=True), Row("9", "reference", "x"))
    assert _run(monkeypatch, tmp_path, scenario) == 0


def test_a_missed_target_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scenario = _adding(Row("9", "met", "x", passed=True), Row("9", "missed", "x", passed=False))
    assert _run(monkeypatch, tmp_path, scenario) == 1


def test_a_scenario_that_fails_to_run_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def run(ctx: Context) -> None:
        """A scenario whose server never starts."""
        raise BenchError("no server")

    assert _run(monkeypatch, tmp_path, Scenario("9", run, needs_wrk=False)) == 1
