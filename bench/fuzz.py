"""The long run of the property tests (issue 13, point 5): a million examples across the targets.

    .venv/bin/python bench/fuzz.py --examples 1000000 --jobs 2
    .venv/bin/python bench/fuzz.py --examples 50000 --targets verifier-signed-json,issuer-form
    .venv/bin/python bench/fuzz.py --replay verifier-signed-json:12345 --seed 7 --shrink

The targets are those of tests/support/fuzz.py (the same strategies and checks the test suite
runs 200 times each under Hypothesis): the token verifier fed arbitrary Authorization headers,
mutated valid tokens and tokens re-encoded with arbitrary JSON and signed by a trusted key; the
issuer's form parser; the resource service's JSON body parser. Each target gets an equal share
of ``--examples``.

Generation only. The test suite's Hypothesis runs spend most of their time in the engine around
the strategies (its choice tree, mutations of earlier examples, bookkeeping per test case), not
in the code under test; here every example is one draw of the target's strategy from Hypothesis's
own generator (``ConjectureData`` seeded by ``random.Random("SEED:TARGET:INDEX:ATTEMPT")``), fed
to the target's check. So the inputs are the strategies' own, each example is reproducible from
the seed and its index, and the run never shrinks: a failure is reported as drawn (value,
traceback, replay command); ``--replay TARGET:INDEX --seed SEED --shrink`` draws it again and
shrinks it with Hypothesis's shrinker for printing. The work is split into chunks of ``--chunk``
examples spread over ``--jobs`` processes. Prints, per target and in total: examples run,
failures, CPU time, rate; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import Phase, settings  # noqa: E402
from hypothesis.control import BuildContext  # noqa: E402
from hypothesis.errors import StopTest  # noqa: E402
from hypothesis.internal.conjecture.data import ConjectureData  # noqa: E402
from hypothesis.internal.conjecture.engine import ConjectureRunner  # noqa: E402
from hypothesis.internal.escalation import InterestingOrigin  # noqa: E402

from tests.support.fuzz import TARGETS  # noqa: E402

MAX_INVALID = 100  # draws rejected by a strategy's filter before an index is given up on


def draw_data(name: str, seed: int, index: int) -> tuple[Any, ConjectureData, int]:
    """Example ``index`` of target ``name`` under ``seed``, the ConjectureData that drew it (its
    choices replay it) and how many draws a filter rejected first."""
    strategy = TARGETS[name].strategy
    for attempt in range(MAX_INVALID):
        rnd = random.Random(f"{seed}:{name}:{index}:{attempt}")
        data = ConjectureData(random=rnd)
        try:
            with BuildContext(data, wrapped_test=TARGETS[name].check):
                return data.draw(strategy), data, attempt
        except StopTest:  # a filter rejected the draw (or it overran): draw again
            continue
    raise RuntimeError(f"{name}: {MAX_INVALID} invalid draws in a row at index {index}")


def draw(name: str, seed: int, index: int) -> tuple[Any, int]:
    value, _, rejected = draw_data(name, seed, index)
    return value, rejected


def shrink(name: str, data: ConjectureData) -> Any:
    """Hypothesis's shrinker started from a failing draw's choices: the smallest value it finds
    that fails the check the same way (only for printing; the long run never shrinks)."""
    target = TARGETS[name]

    def test_function(attempt: ConjectureData) -> None:
        with BuildContext(attempt, wrapped_test=target.check):
            value = attempt.draw(target.strategy)
        try:
            target.check(value)
        except Exception as exc:
            attempt.mark_interesting(InterestingOrigin.from_exception(exc))

    runner = ConjectureRunner(
        test_function,
        settings=settings(database=None, deadline=None, phases=[Phase.shrink]),
        random=random.Random(0),
    )
    runner.cached_test_function(data.choices)
    runner.shrink_interesting_test_cases()
    (result,) = runner.interesting_test_cases.values()
    final = ConjectureData.for_choices(result.choices)
    with BuildContext(final, wrapped_test=target.check):
        return final.draw(target.strategy)


def run_chunk(name: str, seed: int, start: int, count: int) -> dict[str, Any]:
    """Examples ``start`` .. ``start + count - 1`` of one target; runs in a worker process."""
    check = TARGETS[name].check
    failures: list[dict[str, Any]] = []
    invalid = 0
    cpu = time.process_time()
    for index in range(start, start + count):
        value, rejected = draw(name, seed, index)
        invalid += rejected
        try:
            check(value)
        except Exception:
            failures.append(
                {
                    "target": name,
                    "index": index,
                    "value": repr(value)[:4000],
                    "traceback": traceback.format_exc(limit=-6),
                    "replay": f"bench/fuzz.py --replay {name}:{index} --seed {seed} --shrink",
                }
            )
    return {
        "target": name,
        "examples": count,
        "invalid": invalid,
        "failures": failures,
        "cpu_seconds": time.process_time() - cpu,
    }


def replay(spec: str, seed: int, *, shrunk: bool) -> int:
    name, _, index = spec.partition(":")
    value, data, _ = draw_data(name, seed, int(index))
    print(f"{name} example {index} (seed {seed}):\n{value!r}")
    try:
        TARGETS[name].check(value)
    except Exception:
        traceback.print_exc()
    else:
        print("passes")
        return 0
    if shrunk:
        smallest = shrink(name, data)
        print(f"shrunk:\n{smallest!r}")
        try:
            TARGETS[name].check(smallest)
        except Exception:
            traceback.print_exc()
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000, help="total, all targets")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated: {','.join(TARGETS)}"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--chunk", type=int, default=2_000, help="examples per work unit")
    parser.add_argument("--seed", type=int, help="default: random (printed)")
    parser.add_argument("--replay", metavar="TARGET:INDEX", help="draw and check one example")
    parser.add_argument("--shrink", action="store_true", help="with --replay: shrink a failure")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    if args.replay:
        if args.seed is None:
            parser.error("--replay needs the --seed of the run")
        return replay(args.replay, seed, shrunk=args.shrink)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names or min(args.examples, args.chunk, args.jobs) < 1:
        parser.error(f"unknown or no targets {unknown}; examples, chunk, jobs must be positive")
    share, extra = divmod(args.examples, len(names))
    tasks: list[tuple[str, int, int, int]] = []
    for i, name in enumerate(names):
        count = share + (1 if i < extra else 0)
        tasks += [(name, seed, s, min(args.chunk, count - s)) for s in range(0, count, args.chunk)]
    print(
        f"seed {seed}; {args.examples} examples, {len(tasks)} chunks, {args.jobs} jobs", flush=True
    )

    totals = {
        n: {"examples": 0, "invalid": 0, "failures": 0, "cpu": 0.0, "wall": 0.0} for n in names
    }
    first_started: dict[str, float] = {}
    failures: list[dict[str, Any]] = []
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")  # fresh workers: no event loop inherited
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        pending: dict[Future[dict[str, Any]], str] = {}
        queue = list(tasks)
        while queue or pending:
            while queue and len(pending) < args.jobs * 2:
                task = queue.pop(0)
                first_started.setdefault(task[0], time.monotonic())
                pending[pool.submit(run_chunk, *task)] = task[0]
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                del pending[future]
                result = future.result()
                t = totals[result["target"]]
                t["examples"] += result["examples"]
                t["invalid"] += result["invalid"]
                t["failures"] += len(result["failures"])
                t["cpu"] += result["cpu_seconds"]
                t["wall"] = time.monotonic() - first_started[result["target"]]
                for failure in result["failures"]:
                    failures.append(failure)
                    print(
                        f"[{failure['target']}] FAILURE at example {failure['index']}:\n"
                        f"{failure['value']}\n{failure['traceback']}replay: {failure['replay']}",
                        file=sys.stderr,
                        flush=True,
                    )
                print(
                    f"[{result['target']}] {t['examples']} examples, {t['failures']} failures, "
                    f"{t['cpu']:.0f} CPU s ({t['examples'] / max(t['cpu'], 1e-9):.0f}/CPU s); "
                    f"{time.monotonic() - started:.0f} s elapsed",
                    flush=True,
                )
    elapsed = time.monotonic() - started
    total = sum(t["examples"] for t in totals.values())
    cpu = sum(t["cpu"] for t in totals.values())
    print()
    print(f"{'target':<24} {'examples':>10} {'failures':>9} {'CPU s':>8} {'per CPU s':>10}")
    for name, t in totals.items():
        rate = t["examples"] / t["cpu"] if t["cpu"] else 0.0
        print(f"{name:<24} {t['examples']:>10} {t['failures']:>9} {t['cpu']:>8.0f} {rate:>10.0f}")
    print(
        f"{'total':<24} {total:>10} {len(failures):>9} {cpu:>8.0f} "
        f"{total / cpu if cpu else 0:>10.0f}"
    )
    print(
        f"examples run: {total}; failures: {len(failures)}; duration: {elapsed:.0f} s wall "
        f"({args.jobs} jobs, {os.cpu_count()} CPUs); seed {seed}"
    )
    if args.json:
        summary = {
            "seed": seed,
            "jobs": args.jobs,
            "examples": total,
            "failures": len(failures),
            "seconds": round(elapsed, 1),
            "cpu_seconds": round(cpu, 1),
            "targets": [
                {
                    "target": n,
                    "examples": t["examples"],
                    "failures": t["failures"],
                    "invalid_draws": t["invalid"],
                    "cpu_seconds": round(t["cpu"], 1),
                    "rate_per_cpu_second": round(t["examples"] / t["cpu"], 1) if t["cpu"] else 0,
                }
                for n, t in totals.items()
            ],
            "failure_details": failures,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
