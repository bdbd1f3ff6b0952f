"""bench/harness/report.py and history.py: the report keeps its History table and the
hand-written Fuzzing section across rewrites."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.cli import make_config, parse_args
from bench.harness.config import Row
from bench.harness.history import History, with_kept_sections
from bench.harness.report import render_saved
from bench.scenarios import SCENARIOS, numbers


def _render(saved: dict[str, Any], history: History) -> str:
    return render_saved(saved, history, scenarios=numbers())


def _saved_run(tmp_path: Path, *, quick: bool, stamp: str, ratio: float) -> Any:
    """The JSON a run saves, with one row per scenario (the /token row's ratio as given)."""
    cfg = make_config(parse_args(["--quick"] if quick else []), tmp_path / f"run-{stamp}-1")
    rows = [Row(s.number, f"scenario {s.number}", "x") for s in SCENARIOS.values()]
    rows.append(
        Row(
            "1",
            "issuer POST /token, client_credentials, 1 worker, vs raw RSA signs",
            "x",
            ratio=ratio,
            target=">= 0.75",
            passed=ratio >= 0.75,
        )
    )
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {
        "config": config,
        "rows": [asdict(r) for r in rows],
        "machine": {
            "uname_a": "Linux test",
            "cpu_model": "test",
            "cpus": "2",
            "memory": "1 GiB",
            "load_average_at_start": "0.10 0.20 0.30",
            "cpu_busy_before_start": "1%",
        },
        "versions": {"python": "3"},
        "ceilings": {"rsa2048_sign": {"per_s": 1100.0}},
    }


def test_the_report_keeps_a_history_of_full_runs(tmp_path: Path) -> None:
    """Each full run adds a line to the history table; the report is rewritten, the table is
    carried over; a quick (or partial) run adds nothing and loses nothing."""
    first = _render(
        _saved_run(tmp_path, quick=False, stamp="20261201T100000Z", ratio=0.8),
        History(),
    )
    second = _render(
        _saved_run(tmp_path, quick=False, stamp="20261202T100000Z", ratio=0.7),
        History.parse(first),
    )
    quick = _render(
        _saved_run(tmp_path, quick=True, stamp="20261203T100000Z", ratio=0.9),
        History.parse(second),
    )
    history = History.parse(quick)
    assert [r["date (UTC)"] for r in history.rows] == ["2026-12-01 10:00", "2026-12-02 10:00"]
    assert [r["/token ÷ raw sign"] for r in history.rows] == ["0.80", "0.70 (no)"]
    assert {r["raw RSA-2048 signs/s"] for r in history.rows} == {"1,100"}
    assert history.rows[0]["targets met"] == "1 of 1"
    # Rendering the same run again replaces its line rather than adding a second one.
    again = _render(
        _saved_run(tmp_path, quick=False, stamp="20261202T100000Z", ratio=0.76),
        History.parse(quick),
    )
    assert [r["/token ÷ raw sign"] for r in History.parse(again).rows] == ["0.80", "0.76"]


def test_the_history_keeps_columns_it_no_longer_writes() -> None:
    old = (
        "# Benchmarks\n\n## History\n\n| date (UTC) | retired ratio |\n| --- | --- |\n| d | 1.0 |\n"
    )
    history = History.parse(old)
    text = "\n".join(history.render())
    assert "retired ratio" in text
    assert "| d |" in text


def test_the_report_carries_the_hand_written_fuzzing_section_over(tmp_path: Path) -> None:
    """bench/fuzz.py's section of docs/benchmarks.md is not this script's: a rewritten report
    keeps it word for word, and a report without one gains nothing."""
    out = tmp_path / "benchmarks.md"
    fuzzing = "## Fuzzing\n\nA million examples, 0 failures.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |"
    out.write_text("# Benchmarks\n\n## Results\n\nold\n\n" + fuzzing + "\n\n## Method\n\n- x\n")
    report = "# Benchmarks\n\n## Results\n\nnew\n\n## Method\n\n- y\n"
    kept = with_kept_sections(report, out)
    assert kept.startswith(report.rstrip("\n"))
    assert kept.endswith("\n" + fuzzing + "\n")
    assert "old" not in kept
    out.write_text(report)
    assert with_kept_sections(report, out) == report
