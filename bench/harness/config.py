"""What every part of the benchmark shares: paths, the run's configuration, a result row and the
context a scenario writes its rows and raw numbers into."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
PEER_SRC = BENCH / "peer"
PEER_DIR = BENCH / ".peer"  # npm installs here (gitignored)
RESULTS = BENCH / "results"  # gitignored

# The audience and scope every scenario's tokens carry.
AUDIENCE = "photos"
SCOPE = "photos:read"


class BenchError(RuntimeError):
    """A scenario could not be measured (server did not start, requests failed, ...)."""


def collect(proc: subprocess.Popen[str], seconds: float, overdue: str) -> str:
    """The output of a load process meant to run ``seconds``; killed, and ``BenchError``
    (``overdue`` and the output's tail), when it runs a minute longer."""
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise BenchError(f"{overdue}:\n{out[-2000:]}") from None
    return out


@dataclass
class Config:
    quick: bool
    duration: int  # seconds per wrk measurement
    warmup: int  # seconds of discarded wrk load before each measurement
    connections: int
    threads: int
    server_cpus: str
    load_cpus: str
    base_port: int
    ceiling_seconds: float
    run_dir: Path
    issuer_cmd: list[str]
    resource_cmd: list[str]
    pinned: bool
    profile: bool = False
    memory_tokens: int = 1_000_000
    repeat: int = 1
    rounds: int = 3  # alternations per ratio (B A B ... B), see harness/ratio.py


@dataclass
class Row:
    """One line of the report's results table."""

    scenario: str  # "1", "2", ...
    name: str
    measured: str
    reference: str = ""  # ceiling or peer
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target (a reference or informational row)
    note: str = ""


@dataclass
class Context:
    """A run in progress: its configuration, the rows so far, the raw numbers for the JSON."""

    cfg: Config
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f" ratio={row.ratio:.2f}"
        verdict = {True: " PASS", False: " FAIL", None: ""}[row.passed]
        print(f"  [{row.scenario}] {row.name}: {row.measured}{ratio}{verdict}", flush=True)


def pin(cpus: str, cmd: list[str], cfg: Config) -> list[str]:
    """``cmd`` under ``taskset -c cpus`` when the run pins (two CPUs or more)."""
    return ["taskset", "-c", cpus, *cmd] if cfg.pinned else cmd


def cpu_set(spec: str) -> set[int]:
    """``"0-1,3"`` -> {0, 1, 3}."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


@dataclass(frozen=True)
class Scenario:
    """One scenario of the report: its number, the function that measures it (the first line of
    its docstring is its ``--list`` summary), its paragraph of the report's Method section, and
    whether it drives wrk."""

    number: str
    run: Callable[[Context], None]
    method: str = ""
    needs_wrk: bool = True

    @property
    def summary(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]
