"""Smoke test for the benchmark harness (issue 7): the bench script itself runs.

The benchmarks are not run by ./scripts/test; this only runs `scripts/bench --quick --only
ceilings` (in-process, no servers, no wrk, no node) and checks the parsing helpers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_bench_quick_ceilings_runs_and_prints_ratios(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    raw = tmp_path / "bench.json"
    env = {**os.environ, "BENCH_PYTHON": sys.executable}
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "bench"),
            "--quick",
            "--only",
            "ceilings",
            "--out",
            str(out),
            "--json-out",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The results table is printed, with at least one ratio column filled in.
    assert "| # | scenario | measured | ceiling / peer | ratio | target | pass |" in proc.stdout
    assert re.search(r"raw RSA-2048 sign, cryptography .*\| [\d,]+ /s \|", proc.stdout)
    assert re.search(r"\| \d+\.\d\d \|", proc.stdout), proc.stdout

    report = out.read_text()
    assert report.startswith("# Benchmarks")
    for needle in (
        "Machine:",
        "CPU:",
        "| cryptography |",
        "| uvicorn |",
        "| starlette |",
        "| node |",
        "| oidc-provider |",
        "QUICK",
    ):
        assert needle in report, needle

    data = json.loads(raw.read_text())
    assert data["ceilings"]["rsa2048_sign"]["per_s"] > 0
    assert data["ceilings"]["rsa2048_verify"]["per_s"] > data["ceilings"]["rsa2048_sign"]["per_s"]
    assert data["failed"] == []


def test_bench_lists_all_seven_scenarios() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    numbers = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"1", "2", "3", "4", "5", "6", "7"} <= numbers


def test_parse_wrk_output() -> None:
    run = _load_run()
    bench_json = {
        "requests": 2000,
        "duration_us": 2000000,
        "bytes": 2544220,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1},
        "latency_us": {
            "min": 10712,
            "mean": 30751.1,
            "max": 104588,
            "stdev": 14177.1,
            "p50": 28885,
            "p90": 49417,
            "p99": 95070,
            "p999": 104000,
        },
    }
    sample = (
        "Running 2s test @ http://127.0.0.1:18000/token\n"
        "  1 threads and 32 connections\n"
        "  2000 requests in 2.00s, 2.43MB read\n"
        "  Non-2xx or 3xx responses: 3\n"
        "Requests/sec:    1000.00\n"
        f"BENCH_JSON {json.dumps(bench_json, separators=(',', ':'))}\n"
    )
    res = run.parse_wrk(sample)
    assert res.requests == 2000
    assert res.rps == 1000.0
    assert res.p50_ms == 28.885
    assert res.p99_ms == 95.07
    assert res.non_2xx == 3
    assert res.socket_errors == 1


def _saved_run(run: ModuleType, tmp_path: Path, *, quick: bool, stamp: str, ratio: float) -> Any:
    """The JSON a run saves, with one row per scenario (the /token row's ratio as given)."""
    cfg = run.make_config(run.parse_args(["--quick"] if quick else []), tmp_path / f"run-{stamp}-1")
    rows = [run.Row(num, f"scenario {num}", "x") for num, _fn in run.SCENARIOS.values()]
    rows.append(
        run.Row(
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
    run = _load_run()
    first = run.render_saved(
        _saved_run(run, tmp_path, quick=False, stamp="20261201T100000Z", ratio=0.8),
        run.History(),
    )
    second = run.render_saved(
        _saved_run(run, tmp_path, quick=False, stamp="20261202T100000Z", ratio=0.7),
        run.History.parse(first),
    )
    quick = run.render_saved(
        _saved_run(run, tmp_path, quick=True, stamp="20261203T100000Z", ratio=0.9),
        run.History.parse(second),
    )
    history = run.History.parse(quick)
    assert [r["date (UTC)"] for r in history.rows] == ["2026-12-01 10:00", "2026-12-02 10:00"]
    assert [r["/token ÷ raw sign"] for r in history.rows] == ["0.80", "0.70 (no)"]
    assert {r["raw RSA-2048 signs/s"] for r in history.rows} == {"1,100"}
    assert history.rows[0]["targets met"] == "1 of 1"
    # Rendering the same run again replaces its line rather than adding a second one.
    again = run.render_saved(
        _saved_run(run, tmp_path, quick=False, stamp="20261202T100000Z", ratio=0.76),
        run.History.parse(quick),
    )
    assert [r["/token ÷ raw sign"] for r in run.History.parse(again).rows] == ["0.80", "0.76"]


def test_the_history_keeps_columns_it_no_longer_writes() -> None:
    run = _load_run()
    old = (
        "# Benchmarks\n\n## History\n\n| date (UTC) | retired ratio |\n| --- | --- |\n| d | 1.0 |\n"
    )
    history = run.History.parse(old)
    text = "\n".join(history.render())
    assert "retired ratio" in text
    assert "| d |" in text


def test_login_p99_counts_timed_out_logins() -> None:
    run = _load_run()

    def res(requests: int, timeouts: int) -> Any:
        return run.WrkResult(requests, 15.0, requests / 15, 900.0, 1000.0, 1200.0, 1500.0, 0,
                             timeouts)  # fmt: skip

    assert run.login_p99(res(100, 0))[0] == 1200.0
    assert run.login_p99(res(100, 5))[0] == float("inf")  # 5 of 105 never answered in time
    assert run.login_p99(res(0, 8))[0] == float("inf")


def test_the_report_carries_the_hand_written_fuzzing_section_over(tmp_path: Path) -> None:
    """bench/fuzz.py's section of docs/benchmarks.md is not this script's: a rewritten report
    keeps it word for word, and a report without one gains nothing."""
    run = _load_run()
    out = tmp_path / "benchmarks.md"
    fuzzing = "## Fuzzing\n\nA million examples, 0 failures.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |"
    out.write_text("# Benchmarks\n\n## Results\n\nold\n\n" + fuzzing + "\n\n## Method\n\n- x\n")
    report = "# Benchmarks\n\n## Results\n\nnew\n\n## Method\n\n- y\n"
    kept = run.with_kept_sections(report, out)
    assert kept.startswith(report.rstrip("\n"))
    assert kept.endswith("\n" + fuzzing + "\n")
    assert "old" not in kept
    out.write_text(report)
    assert run.with_kept_sections(report, out) == report
