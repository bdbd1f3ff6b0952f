"""``python -m bench`` (run by ./scripts/bench): pick the scenarios, run them, write the report.

    python -m bench [--quick] [--only ceilings,token,...] [--skip memory] [--duration 15] ...

Writes docs/benchmarks.md after a full run of every scenario (--quick, --profile and --only/--skip
runs write to bench/results/ unless --out is given), and bench/results/latest.json with the raw
numbers. Exit status: 0 when every selected scenario ran and met its targets, 1 when one failed
to run or missed a target (bench/harness/ratio.py, ``exit_status``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.harness.config import RESULTS, ROOT, BenchError, Config, Context
from bench.harness.history import history_row, previous_history, with_kept_sections
from bench.harness.machine import busy, machine_info, versions
from bench.harness.processes import ServerError
from bench.harness.ratio import exit_status, missed
from bench.harness.report import render, render_saved
from bench.scenarios import SCENARIOS, methods, numbers

REPORT = ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/bench", description="Keyhouse benchmarks (issue 7)")
    ap.add_argument("--quick", action="store_true", help="~2 s per measurement (smoke run)")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--duration", type=int, default=None, help="seconds per measurement (15)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up seconds (3)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (1 per load core)")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument(
        "--base-port",
        type=int,
        default=18000,
        help="issuer (or HAProxy)=BASE, resource=BASE+1, baseline=BASE+9, issuer replicas"
        " BASE+20 and +21, HAProxy stats BASE+30, peer=BASE+100",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown report (default docs/benchmarks.md; quick: bench/results/)",
    )
    ap.add_argument("--json-out", type=Path, default=RESULTS / "latest.json")
    ap.add_argument(
        "--memory-tokens",
        type=int,
        default=None,
        help="distinct tokens for scenario 6 (1,000,000; quick: 3,000)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each throughput N times and keep the best (other load only slows a run)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="each ratio alternates its two sides: B A B ... A B with N A runs (3; quick: 1)",
    )
    ap.add_argument(
        "--render-only",
        type=Path,
        default=None,
        metavar="JSON",
        help="re-render the report of an earlier run from its JSON (bench/results/latest.json)",
    )
    ap.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target is missed (always so now; accepted for old command lines)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during Keyhouse's measured runs (perturbs the"
        " numbers; the report then goes to bench/results/ unless --out is given)",
    )
    return ap.parse_args(argv)


def make_config(args: argparse.Namespace, run_dir: Path) -> Config:
    venv_bin = Path(sys.executable).parent
    issuer_cmd = shlex.split(os.environ.get("BENCH_ISSUER_CMD", str(venv_bin / "issuer")))
    resource_cmd = shlex.split(
        os.environ.get("BENCH_RESOURCE_CMD", str(venv_bin / "resource-service"))
    )
    return Config(
        quick=args.quick,
        duration=args.duration or (2 if args.quick else 15),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 3),
        connections=args.connections,
        threads=args.threads,
        server_cpus=args.server_cpus,
        load_cpus=args.load_cpus,
        base_port=args.base_port,
        ceiling_seconds=0.5 if args.quick else 5.0,
        run_dir=run_dir,
        issuer_cmd=issuer_cmd,
        resource_cmd=resource_cmd,
        pinned=(os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None,
        profile=args.profile,
        repeat=args.repeat,
        rounds=args.rounds or (1 if args.quick else 3),
        memory_tokens=args.memory_tokens or (3_000 if args.quick else 1_000_000),
    )


def selected(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = [n for n in [*names, *skip] if n not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"bench: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return [n for n in SCENARIOS if n in names and n not in skip]


def new_run_directory() -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    d = RESULTS / f"run-{stamp}-{os.getpid()}"
    d.mkdir(parents=True)
    return d


def run_scenarios(ctx: Context, names: list[str]) -> list[tuple[str, str, str]]:
    """Runs each scenario in turn; the ones that failed to run: (number, name, why)."""
    failed: list[tuple[str, str, str]] = []
    for name in names:
        scenario = SCENARIOS[name]
        print(f"== {scenario.number} {name}", flush=True)
        try:
            scenario.run(ctx)
        except (
            BenchError,
            ServerError,
            subprocess.SubprocessError,
            OSError,
            ValueError,
            KeyError,
        ) as exc:
            msg = str(exc) or type(exc).__name__
            failed.append((scenario.number, name, msg))
            print(f"  [{scenario.number}] {name} FAILED: {msg}", file=sys.stderr, flush=True)
            if not isinstance(exc, BenchError | ServerError):
                traceback.print_exc()
    return failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only is not None:
        out = args.out or REPORT
        saved = json.loads(args.render_only.read_text())
        report = render_saved(saved, previous_history(out), scenarios=numbers(), methods=methods())
        out.write_text(with_kept_sections(report, out))
        print(f"bench: wrote {out}")
        return 0
    if args.list:
        for name, scenario in SCENARIOS.items():
            print(f"{scenario.number} {name:10s} {scenario.summary}")
        return 0
    names = selected(args)
    started = dt.datetime.now(dt.UTC)
    run_dir = new_run_directory()
    cfg = make_config(args, run_dir)
    ctx = Context(cfg)
    ctx.raw["machine"] = machine_info()
    pct = busy(ctx.raw["machine"])
    if pct is not None and pct > 10:
        print(
            f"bench: WARNING: the machine is {pct:.0f}% busy before the run; numbers will be"
            " skewed",
            file=sys.stderr,
        )
    ctx.raw["versions"] = versions()
    ctx.raw["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    print(
        f"bench: {', '.join(names)}; {cfg.duration}s per measurement; logs in {run_dir}", flush=True
    )
    if any(SCENARIOS[n].needs_wrk for n in names) and not shutil.which("wrk"):
        print("bench: wrk not found (./scripts/bench installs it)", file=sys.stderr)
        return 1
    failed = run_scenarios(ctx, names)
    ctx.raw["rows"] = [asdict(r) for r in ctx.rows]
    ctx.raw["failed"] = failed
    # Only a full, unprofiled run of every scenario replaces docs/benchmarks.md by default.
    full = not (cfg.quick or cfg.profile) and names == list(SCENARIOS)
    out = args.out or (
        REPORT
        if full
        else RESULTS / ("benchmarks-quick.md" if cfg.quick else "benchmarks-partial.md")
    )
    # The report replaces the one at ``out``, but its history table is carried over, with this
    # run's line added when it was a full run.
    history = previous_history(out)
    if full:
        history.add(history_row(ctx, started))
    report = with_kept_sections(render(ctx, started, failed, history, methods()), out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(ctx.raw, indent=2) + "\n")
    (run_dir / "report.md").write_text(report)
    print()
    table = report.split("## Results", 1)[1]
    print("\n".join(line for line in table.splitlines() if line.startswith("|")))
    print(f"\nbench: wrote {out} and {args.json_out}")
    for row in missed(ctx.rows):
        print(f"bench: target missed: [{row.scenario}] {row.name}: {row.target}", file=sys.stderr)
    for num, name, _why in failed:
        print(f"bench: failed to run: [{num}] {name}", file=sys.stderr)
    return exit_status(ctx.rows, failed)
