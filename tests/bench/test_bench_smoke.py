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
from pathlib import Path
from types import ModuleType

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
