"""bench/harness/balancer.py and scenario 10 without haproxy: HAProxy's stats read right, and a
machine without haproxy gets a row that says so, neither a pass nor a miss."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.balancer import backend_states, haproxy_missing
from bench.harness.config import Config, Context
from bench.harness.ratio import exit_status
from bench.scenarios import balancer, refresh

# HAProxy 2.6's /stats;csv layout (docker/haproxy/haproxy.cfg's proxies): status is column 18.
MIDDLE = "qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis"


def _line(proxy: str, server: str, status: str) -> str:
    return ",".join([proxy, server, *["0"] * len(MIDDLE.split(",")), status, "1"])


STATS = "\n".join(
    [
        f"# pxname,svname,{MIDDLE},status,weight",
        _line("issuer", "FRONTEND", "OPEN"),
        _line("issuers", "issuer1", "UP"),
        _line("issuers", "issuer2", "DOWN 1/2"),
        _line("issuers", "BACKEND", "UP"),
        _line("issuer_keys", "issuer1", "DOWN"),
        _line("issuer_keys", "BACKEND", "DOWN"),
        _line("admin", "FRONTEND", "OPEN"),
    ]
)


def test_backend_states_reads_the_token_backends_servers() -> None:
    assert backend_states(STATS) == {"issuer1": "UP", "issuer2": "DOWN 1/2"}
    assert backend_states(STATS, "issuer_keys") == {"issuer1": "DOWN"}


def _context(tmp_path: Path) -> Context:
    cfg = Config(
        quick=True, duration=1, warmup=0, connections=4, threads=1, server_cpus="0",
        load_cpus="1", base_port=18700, ceiling_seconds=0.1, run_dir=tmp_path, issuer_cmd=[],
        resource_cmd=[], pinned=False,
    )  # fmt: skip
    return Context(cfg)


def test_without_haproxy_the_balancer_row_says_not_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no haproxy on it
    assert haproxy_missing() == "haproxy not installed (apt-get install haproxy)"
    ctx = _context(tmp_path)
    balancer.run(ctx)  # starts nothing
    own, shared = ctx.rows
    assert "through HAProxy on a CPU of its own" in own.name
    assert "through HAProxy sharing the replica's CPU" in shared.name
    for row in (own, shared):
        assert row.measured == "not measured: haproxy not installed (apt-get install haproxy)"
        assert row.passed is None
        assert row.ratio is None
    assert own.target == ">= 0.9 (not checked)"
    assert shared.target == "(report)"
    assert exit_status(ctx.rows, []) == 0


def test_haproxys_cpu_counts_against_the_ratio_only_on_a_shared_cpu() -> None:
    own = balancer.cpu_note("own", 800, 820, 70)
    shared = balancer.cpu_note("shared", 800, 820, 70)
    assert "HAProxy 70 us on the load CPUs (predicted ratio 0.98)" in own
    assert "HAProxy 70 us on the replica's CPU (predicted ratio 0.90)" in shared
    assert balancer.target("own") == balancer.BALANCER_TARGET
    assert balancer.target("shared") is None


def test_a_refresh_row_not_measured_keeps_its_target_unchecked(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    refresh.not_measured(ctx, "postgresql", 1, "PostgreSQL server binaries not found")
    refresh.not_measured(ctx, "sqlite", 2, "haproxy not installed")
    pg, lb = ctx.rows
    assert pg.name.startswith("issuer POST /token, refresh_token, PostgreSQL, 1 replica")
    assert (pg.target, pg.passed) == (">= 0.5 (not checked)", None)
    assert "2 replicas behind HAProxy" in lb.name
    assert (lb.target, lb.passed) == ("(report)", None)
    assert lb.measured == "not measured: haproxy not installed"
