"""The long run of the property tests (issue 13, point 5): a million examples across the targets.

    .venv/bin/python bench/fuzz.py --examples 1000000
    .venv/bin/python bench/fuzz.py --examples 50000 --targets verifier-signed-json,issuer-form

The targets are those of tests/support/fuzz.py (the same strategies and checks the test suite
runs a few hundred times each): the token verifier fed arbitrary Authorization headers, mutated
valid tokens and tokens re-encoded with arbitrary JSON and signed by a trusted key; the issuer's
form parser; the resource service's JSON body parser. Each target gets an equal share of
``--examples``, run in chunks of ``--chunk`` examples (one Hypothesis run each, fresh seed), which
keeps Hypothesis's per-run memory bounded. A failure is shrunk and printed by Hypothesis; the
run goes on with the next target and exits 1 at the end. One process, one core; run it under
``nice``. Prints, per target and in total: examples run, failures, duration, rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import Phase, given, settings  # noqa: E402

from tests.support.fuzz import HEALTH_CHECKS, TARGETS, Target  # noqa: E402


def run_target(target: Target, examples: int, chunk: int, *, shrink: bool) -> dict[str, Any]:
    calls = 0
    failures: list[str] = []

    def check(value: Any) -> None:
        nonlocal calls
        calls += 1
        target.check(value)

    phases = [Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])
    started, cpu = time.monotonic(), time.process_time()
    done = 0
    while done < examples:
        n = min(chunk, examples - done)
        test = settings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=HEALTH_CHECKS,
            report_multiple_bugs=False,
        )(given(target.strategy)(check))
        try:
            test()
        except Exception:  # the falsifying example, already printed by Hypothesis
            failures.append(traceback.format_exc(limit=-3))
            print(f"[{target.name}] FAILURE:\n{failures[-1]}", file=sys.stderr, flush=True)
        done += n  # asked for; ``calls`` counts what actually ran (fewer after a failure)
        elapsed, used = time.monotonic() - started, time.process_time() - cpu
        print(
            f"[{target.name}] {calls} examples, {len(failures)} failures, "
            f"{elapsed:.0f} s ({calls / elapsed:.0f}/s; {used:.0f} s CPU)",
            flush=True,
        )
    elapsed, used = time.monotonic() - started, time.process_time() - cpu
    return {
        "target": target.name,
        "examples": calls,
        "failures": len(failures),
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 1),
        "rate": round(calls / elapsed, 1) if elapsed else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000, help="total, all targets")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated: {','.join(TARGETS)}"
    )
    parser.add_argument("--chunk", type=int, default=10_000, help="examples per Hypothesis run")
    parser.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names or args.examples < 1 or args.chunk < 1:
        parser.error(f"unknown or no targets {unknown}; examples and chunk must be positive")
    share, extra = divmod(args.examples, len(names))
    started, cpu = time.monotonic(), time.process_time()
    results = []
    for i, name in enumerate(names):
        count = share + (1 if i < extra else 0)
        if count:
            results.append(run_target(TARGETS[name], count, args.chunk, shrink=not args.no_shrink))
    elapsed, used = time.monotonic() - started, time.process_time() - cpu
    total = sum(r["examples"] for r in results)
    failures = sum(r["failures"] for r in results)
    print()
    print(
        f"{'target':<24} {'examples':>10} {'failures':>9} {'seconds':>9} {'CPU s':>8} {'per s':>7}"
    )
    for r in results:
        print(
            f"{r['target']:<24} {r['examples']:>10} {r['failures']:>9} "
            f"{r['seconds']:>9.0f} {r['cpu_seconds']:>8.0f} {r['rate']:>7.0f}"
        )
    print(
        f"{'total':<24} {total:>10} {failures:>9} {elapsed:>9.0f} {used:>8.0f} "
        f"{total / elapsed if elapsed else 0:>7.0f}"
    )
    print(f"examples run: {total}; failures: {failures}; duration: {elapsed:.0f} s")
    if args.json:
        summary = {
            "examples": total,
            "failures": failures,
            "seconds": round(elapsed, 1),
            "cpu_seconds": round(used, 1),
        }
        args.json.write_text(json.dumps({**summary, "targets": results}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
