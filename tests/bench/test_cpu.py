"""bench/harness/cpu.py: where the server CPUs went during a measurement."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.harness.cpu import process_tree, snapshot, split_text, tree_cpu_seconds


def test_split_text_gives_each_groups_share_of_the_cpu_used_in_between() -> None:
    before = {"issuer": 10.0, "HAProxy": 1.0, "PostgreSQL": 5.0}
    after = {"issuer": 16.0, "HAProxy": 1.5, "PostgreSQL": 8.5}
    assert (
        split_text(before, after) == "server CPU: issuer 60%, HAProxy 5%, PostgreSQL 35% (10.0 s)"
    )
    assert split_text(after, after) == "server CPU: none measured"


def test_a_process_trees_cpu_counts_its_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nt = time.process_time()\n"
         "while time.process_time() - t < 0.3: pass\nprint('done', flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "done\n"  # burned 0.3 s of CPU and still runs
        assert child.pid in process_tree(os.getpid())
        assert tree_cpu_seconds([child.pid]) >= 0.25
        assert tree_cpu_seconds([os.getpid()]) >= tree_cpu_seconds([child.pid])
        assert snapshot({"child": [child.pid]})["child"] >= 0.25
    finally:
        child.communicate("")
    assert tree_cpu_seconds([child.pid]) == 0.0  # gone: counts nothing
