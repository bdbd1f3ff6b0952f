"""Scenario 5: one worker against two, for the issuer's POST /token and the resource service's
GET /whoami (two cores: with two workers wrk shares one with a worker)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.harness.config import Context, Scenario
from bench.harness.processes import Server
from bench.harness.ratio import Measured, measure_ratio, ratio_row
from bench.harness.stack import Stack, expect_ok
from bench.harness.wrk import WrkResult, run_wrk
from bench.scenarios.whoami import TOKEN_CACHE_OFF_ENV

TARGET_TEXT = "(report; 2 cores, wrk shares one)"


def process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of pid's children, or of pid itself when it has none."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for p in kids or [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / tick
    return out


def worker_split(before: dict[int, float], after: dict[int, float]) -> str:
    used = [after[p] - before.get(p, 0.0) for p in after]
    total = sum(used) or 1.0
    used = [u for u in used if u / total >= 0.01]  # leave out helpers (e.g. resource tracker)
    return "CPU split between workers: " + " / ".join(f"{100 * u / total:.0f}%" for u in used)


def _measure(
    server: Server, measure: Callable[[], WrkResult], splits: dict[str, str], key: str, two: bool
) -> WrkResult:
    assert server.proc is not None
    cpu0 = process_tree_cpu(server.proc.pid)
    res = measure()
    if two:
        splits[key] = worker_split(cpu0, process_tree_cpu(server.proc.pid))
    return res


def _row(ctx: Context, what: str, m: Measured[WrkResult], split: str) -> None:
    name = f"{what}: 2 workers vs 1" + (f" ({split})" if split else "")
    ctx.add(ratio_row("5", name, m, None, target_text=TARGET_TEXT))


def run(ctx: Context) -> None:
    """One vs two workers for both services: scaling factor. The machine has two cores, so with
    two workers the server gets both and wrk shares CPU 1 with one of them (noted in the doc)."""
    cfg = ctx.cfg
    both = "0-1" if cfg.pinned else None
    stack = Stack(ctx, "s5")
    client = stack.create_client("bench-s5")
    env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}
    url = f"{stack.issuer_url}/token"
    splits: dict[str, str] = {}

    def issuer_run(workers: int) -> Callable[[int], WrkResult]:
        def one(_i: int) -> WrkResult:
            with stack.issuer(workers=workers, cpus=both if workers == 2 else None) as iss:
                what = f"keyhouse POST /token, {workers} worker(s)"
                return _measure(
                    iss,
                    lambda: run_wrk(ctx, what, url, "token.lua", env),
                    splits,
                    "issuer",
                    workers == 2,
                )

        return one

    one_issuer = issuer_run(1)
    m = measure_ratio(cfg.rounds, issuer_run(2), lambda i: one_issuer(i).rps, lambda r: r.rps)
    _row(ctx, "issuer POST /token", m, splits.get("issuer", ""))

    with stack.issuer(workers=1):
        token = stack.get_token(client)

        def resource_run(workers: int) -> Callable[[int], WrkResult]:
            def one(_i: int) -> WrkResult:
                cpus = both if workers == 2 else None
                with stack.resource(workers=workers, env=TOKEN_CACHE_OFF_ENV, cpus=cpus) as rs:
                    rurl = f"{rs.url}/whoami"
                    for _ in range(2 * workers):  # each worker fetches the JWKS first
                        expect_ok(rurl, token)
                    what = f"resource /whoami, {workers} worker(s)"
                    return _measure(
                        rs,
                        lambda: run_wrk(ctx, what, rurl, "bearer.lua", {"BENCH_TOKEN": token}),
                        splits,
                        "resource",
                        workers == 2,
                    )

            return one

        one_resource = resource_run(1)
        rm = measure_ratio(
            cfg.rounds, resource_run(2), lambda i: one_resource(i).rps, lambda r: r.rps
        )
    _row(ctx, "resource GET /whoami", rm, splits.get("resource", ""))


SCENARIO = Scenario("5", run)
