"""Where the server CPUs went during a measurement: CPU seconds (user + system, from /proc) of
named process trees (the issuer replicas, HAProxy, PostgreSQL's postmaster and its backends)
before and after, and the shares of the total."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    found = [pid]
    for p in found:
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
    return found


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds used so far by these processes and their descendants (a process gone by now
    counts nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for p in process_tree(root):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / tick


def snapshot(groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Each group's CPU seconds so far."""
    return {name: tree_cpu_seconds(pids) for name, pids in groups.items()}


def split_text(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """ "server CPU: issuer 61%, PostgreSQL 35%, HAProxy 4% (9.8 s)" from two snapshots."""
    used = {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}
    total = sum(used.values())
    if total <= 0:
        return "server CPU: none measured"
    shares = ", ".join(f"{name} {100 * u / total:.0f}%" for name, u in used.items())
    return f"server CPU: {shares} ({total:.1f} s)"
