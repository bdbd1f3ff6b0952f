"""Smoke test of scenarios 9 (refresh grant on SQLite and PostgreSQL, one replica and two behind
HAProxy) and 10 (HAProxy's cost): `python -m bench --quick --only refresh,balancer` runs against
real issuers, a real PostgreSQL server and a real HAProxy, and every set-up is measured with its
refresh tokens each presented once. A quick run's numbers mean nothing: no ratio is checked, so
each measurement lasts 1 s, without the quick run's 1 s warm-up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.harness.database import postgres_missing
from tests.support.pg_fixture import unavailable
from tests.support.processes import lower_priority

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
BASE_PORT = 18600  # below the test workers' port ranges (20000+), apart from the bench's 18000


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    report: str
    data: dict[str, Any]

    def rows(self, scenario: str) -> list[dict[str, Any]]:
        return [r for r in self.data["rows"] if r["scenario"] == scenario]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    missing = [tool for tool in ("wrk", "haproxy") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install {' '.join(missing)})")
    why = postgres_missing()
    if why:
        unavailable(why)
    tmp = tmp_path_factory.mktemp("bench-db")
    out, raw = tmp / "benchmarks.md", tmp / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "refresh,balancer",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--base-port",
            str(BASE_PORT),
            "--out",
            str(out),
            "--json-out",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
        preexec_fn=lower_priority,  # the load yields to the other workers' tests
    )
    assert raw.exists(), proc.stdout + proc.stderr
    return Run(proc, out.read_text(), json.loads(raw.read_text()))


def test_every_refresh_setup_is_measured_each_token_presented_once(quick_run: Run) -> None:
    assert quick_run.data["failed"] == [], quick_run.proc.stderr
    rows = quick_run.rows("9")
    assert [(" SQLite," in r["name"], "2 replicas behind HAProxy" in r["name"]) for r in rows] == [
        (True, False),
        (True, True),
        (False, False),
        (False, True),
    ], [r["name"] for r in rows]
    for row in rows:
        assert row["ratio"] > 0, row
        assert "signs/s" in row["reference"], row
        assert "never presented before" in row["note"], row
        assert "revoked none" in row["note"], row
        assert "server CPU: issuer " in row["note"], row
        assert ("PostgreSQL " in row["note"]) == ("PostgreSQL" in row["name"]), row
        assert ("HAProxy " in row["note"]) == ("HAProxy" in row["name"]), row
    for runs in quick_run.data["refresh_chains"].values():
        for chain in runs:
            assert chain["starved"] == 0, chain
            assert chain["successors"] > 0, chain
    pg_one = rows[2]
    assert pg_one["target"] == ">= 0.5"
    assert pg_one["passed"] in (True, False)


def test_the_balancers_cost_is_measured(quick_run: Run) -> None:
    """Both placements against the same replica: HAProxy on the load CPUs (the target) and on
    the replica's (reported)."""
    own, shared = quick_run.rows("10")
    assert own["name"].startswith(
        "issuer POST /token, client_credentials, through HAProxy on a CPU of its own"
    )
    assert shared["name"].startswith(
        "issuer POST /token, client_credentials, through HAProxy sharing the replica's CPU"
    )
    for row in (own, shared):
        assert row["ratio"] > 0
        assert "CPU per request: straight, issuer " in row["note"]
    assert own["target"] == ">= 0.9"
    assert "us on the load CPUs" in own["note"]
    assert "with wrk, the replica on" in own["note"]  # the load CPUs are not the server's
    assert shared["target"] == "(report)"
    assert shared["passed"] is None
    assert "us on the replica's CPU" in shared["note"]
    assert "server CPU: issuer " in shared["note"]
    assert "HAProxy " in shared["note"]
    assert "## Method" in quick_run.report
    assert "bench/wrk/refresh.lua" in quick_run.report


def test_the_exit_status_follows_the_targets(quick_run: Run) -> None:
    """A quick run may miss a target (its numbers mean nothing); the status must say so."""
    missed = [r for r in quick_run.data["rows"] if r["passed"] is False]
    assert quick_run.proc.returncode == (1 if missed else 0), quick_run.proc.stderr
