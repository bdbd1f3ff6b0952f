"""Smoke test of scenario 11 (DPoP's cost at a resource service): `python -m bench --quick
--only dpop` runs against a real issuer and resource service, every proof sent once and
accepted; and a load that sends a proof twice fails instead of being measured. A quick run's
numbers mean nothing: no ratio is checked beyond being there, so each measurement lasts 1 s,
without a warm-up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.harness.config import BenchError, Config, Context
from bench.harness.stack import Stack
from bench.scenarios import dpop
from tests.support.processes import lower_priority

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BASE_PORT = 18650  # apart from the database smoke test's 18600-18630 and the bench's 18000
REUSE_PORT = 18670
RPS = 6000  # above any machine's /whoami rate with a proof (~1,400/s at most measured)


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (apt-get install wrk)")


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    data: dict[str, Any]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    _need_wrk()
    tmp = tmp_path_factory.mktemp("bench-dpop")
    out, raw = tmp / "benchmarks.md", tmp / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "dpop",
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
        timeout=300,
        cwd=ROOT,
        check=False,
        preexec_fn=lower_priority,  # the load yields to the other workers' tests
    )
    assert raw.exists(), proc.stdout + proc.stderr
    return Run(proc, json.loads(raw.read_text()))


def test_the_dpop_cost_is_measured_every_proof_accepted_once(quick_run: Run) -> None:
    assert quick_run.data["failed"] == [], quick_run.proc.stderr
    assert quick_run.proc.returncode == 0, quick_run.proc.stderr  # no target: never a miss
    [row] = [r for r in quick_run.data["rows"] if r["scenario"] == "11"]
    assert row["name"] == dpop.NAME
    assert row["ratio"] > 0
    assert row["passed"] is None
    assert "resource service CPU per request (user + system): DPoP " in row["note"]
    assert "every proof sent once and accepted" in row["note"]
    cpu_us = quick_run.data["dpop"]["cpu_us_per_request"]
    assert all(us > 0 for us in cpu_us["dpop"] + cpu_us["bearer"]), cpu_us
    assert quick_run.data["dpop"]["replay_cache_most_entries"] > 0


@pytest.fixture
def context(tmp_path: Path) -> Context:
    venv_bin = Path(sys.executable).parent
    cfg = Config(
        quick=True, duration=1, warmup=0, connections=4, threads=1, server_cpus="0",
        load_cpus="1", base_port=REUSE_PORT, ceiling_seconds=0.1, run_dir=tmp_path,
        issuer_cmd=[str(venv_bin / "issuer")], resource_cmd=[str(venv_bin / "resource-service")],
        pinned=False,
    )  # fmt: skip
    return Context(cfg)


def test_a_proof_sent_twice_fails_the_run(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every proof twice in the file: the second sending is refused (the service's replay
    cache) and the run fails, rather than count the 401s as throughput."""
    _need_wrk()
    stack = Stack(context, "reuse")
    client = stack.create_client("bench-reuse")
    key = dpop.ProofKey()
    made = dpop.make_proofs

    def twice(*args: Any, **kwargs: Any) -> Iterator[str]:
        for proof in made(*args, **kwargs):
            yield proof
            yield proof

    with stack.issuer(), stack.resource() as rs:
        load = dpop.DPoPLoad(context, rs, dpop.bound_token(stack, client, key), key)
        # Proofs for up to RPS requests a second: a run that runs out fails for that reason
        # (not the one under test); 200 was too few on a fast machine (3,505 requests in 1 s).
        load.run("clean", 1, RPS, measured=False)  # the same load with each proof once passes
        monkeypatch.setattr(dpop, "make_proofs", twice)
        with pytest.raises(BenchError, match=r"non-2xx answers .* every proof must be accepted"):
            load.run("reused", 1, RPS, measured=False)
