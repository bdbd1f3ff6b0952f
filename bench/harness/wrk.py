"""wrk, the load generator: start it pinned to the load CPU(s), read its BENCH_JSON line, refuse
a run whose errors would make its numbers meaningless, and the warm-up + measured run."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass

from bench.harness import profiler
from bench.harness.config import WRK_DIR, BenchError, Config, Context, collect, pin
from bench.harness.processes import Server


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    def short(self) -> str:
        return f"{self.rps:,.0f} req/s (p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms)"


def parse_wrk(output: str) -> WrkResult:
    """wrk's output -> its numbers (the BENCH_JSON line bench/wrk/common.lua prints)."""
    m = re.search(r"^BENCH_JSON (\{.*\})$", output, re.MULTILINE)
    if not m:
        raise BenchError("wrk printed no BENCH_JSON line:\n" + output[-2000:])
    data = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errs = data["errors"]
    lat = data["latency_us"]
    seconds = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
    )


def wrk_threads(cfg: Config, connections: int, threads: int | None = None) -> int:
    """The threads wrk runs with (``--threads``, at most one a connection)."""
    return max(1, min(threads or cfg.threads, connections))


def start_wrk(
    cfg: Config,
    url: str,
    script: str,
    env: dict[str, str] | None = None,
    *,
    seconds: int | None = None,
    connections: int | None = None,
    threads: int | None = None,
    timeout_s: int = 10,
) -> subprocess.Popen[str]:
    """wrk running ``bench/wrk/SCRIPT`` against ``url`` (``env``: the script's BENCH_* knobs)."""
    connections = connections or cfg.connections
    threads = wrk_threads(cfg, connections, threads)
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds or cfg.duration}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    return subprocess.Popen(
        pin(cfg.load_cpus, cmd, cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wrk_output(proc: subprocess.Popen[str], seconds: int, what: str) -> str:
    """Everything a wrk run printed, once it exited 0 (BenchError otherwise)."""
    out = collect(proc, seconds, f"wrk ({what}) did not finish")
    if proc.returncode != 0:
        raise BenchError(f"wrk ({what}) exited {proc.returncode}:\n{out[-2000:]}")
    return out


def finish_wrk(
    proc: subprocess.Popen[str], seconds: int, what: str, *, allow_errors: bool = False
) -> WrkResult:
    """wrk's result; refused when errors (or, unless ``allow_errors``, non-2xx answers or no
    answer at all) exceed 1% of the requests."""
    return checked(wrk_output(proc, seconds, what), what, allow_errors=allow_errors)


def checked(out: str, what: str, *, allow_errors: bool = False) -> WrkResult:
    """``finish_wrk``'s verdict on a run's output."""
    res = parse_wrk(out)
    if res.requests == 0 and not allow_errors:
        raise BenchError(f"wrk ({what}) completed no request:\n{out[-2000:]}")
    bad = res.socket_errors if allow_errors else res.non_2xx + res.socket_errors
    if bad > max(5, res.requests // 100):
        raise BenchError(
            f"wrk ({what}): {res.non_2xx} non-2xx and {res.socket_errors} socket errors "
            f"in {res.requests} requests; the numbers would be meaningless"
        )
    return res


def run_wrk(
    ctx: Context,
    what: str,
    url: str,
    script: str,
    env: dict[str, str] | None = None,
    *,
    connections: int | None = None,
    threads: int | None = None,
    warmup: bool = True,
    profile: Server | None = None,
) -> WrkResult:
    """Warm-up, then one measured wrk run (the best of ``--repeat``). With --profile and a
    server, py-spy samples that server during the measured run and a summary is printed."""
    cfg = ctx.cfg
    if warmup and cfg.warmup > 0:
        w = start_wrk(
            cfg, url, script, env, seconds=cfg.warmup, connections=connections, threads=threads
        )
        finish_wrk(w, cfg.warmup, what + " warm-up")
    prof = profiler.start(cfg, profile, what) if cfg.profile and profile else None
    runs: list[WrkResult] = []
    for _ in range(max(1, cfg.repeat)):
        proc = start_wrk(cfg, url, script, env, connections=connections, threads=threads)
        runs.append(finish_wrk(proc, cfg.duration, what))
        if prof is not None:
            break  # the profiler covers the first measured run only
    res = max(runs, key=lambda r: r.rps)  # best of --repeat: other load only ever slows a run
    ctx.raw.setdefault("wrk", {})[what] = asdict(res)
    if len(runs) > 1:
        ctx.raw.setdefault("wrk_all_runs", {})[what] = [r.rps for r in runs]
    print(
        f"    wrk {what}: {res.short()}"
        + (f" (best of {', '.join(f'{r.rps:,.0f}' for r in runs)})" if len(runs) > 1 else ""),
        flush=True,
    )
    if prof is not None:
        profiler.finish(ctx, prof)
    return res
