"""What a rewritten docs/benchmarks.md keeps of the report it replaces: the History table (one
line per full run) and the hand-written sections (``## Fuzzing``: bench/fuzz.py's results)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.config import Context

# docs/benchmarks.md keeps one line per full run: (column, scenario, start of the row's name).
HISTORY_HEADLINES: list[tuple[str, str, str]] = [
    ("/token ÷ raw sign", "1", "issuer POST /token, client_credentials"),
    ("Keyhouse ÷ peer", "1", "tokens/s Keyhouse / node-oidc-provider"),
    ("/whoami ÷ /healthz, no cache", "2", "resource GET /whoami vs its /healthz, no cache"),
    ("/whoami ÷ /healthz, cache", "2", "resource GET /whoami vs its /healthz, token cache"),
    ("÷ PyJWT baseline", "3", "resource /whoami (cache off) vs PyJWT"),
    ("valid in kid flood ÷ calm", "4", "valid /whoami during a flood"),
    ("logins in a flood ÷ alone", "7", "logins inside a closed-loop /healthz flood"),
    ("logins beside /token load ÷ alone", "7", "logins beside"),
]
HISTORY_FIXED = ["date (UTC)", "raw RSA-2048 signs/s"]
HISTORY_TAIL = ["targets met", "load at start"]
HISTORY_HEADING = "## History"

# Hand-written sections of docs/benchmarks.md that a report carries over unchanged (the long
# fuzz run is not a scenario of the bench: bench/fuzz.py).
KEPT_HEADINGS = ("## Fuzzing",)


@dataclass
class History:
    """The table of full runs at the end of docs/benchmarks.md: kept across runs (each full
    run adds its line), whatever else of the report is replaced."""

    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, report: str) -> History:
        """The history table of an earlier report (none: empty)."""
        _, found, rest = report.partition("\n" + HISTORY_HEADING + "\n")
        if not found:
            return cls()
        table = []
        for line in rest.splitlines():
            if line.startswith("## "):
                break
            if line.startswith("|"):
                table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        if len(table) < 2:
            return cls()
        header, body = table[0], table[2:]
        return cls(header, [dict(zip(header, row, strict=False)) for row in body])

    def add(self, row: dict[str, str]) -> None:
        """Adds a run's line, replacing an earlier line of the same run (same date)."""
        self.rows = [r for r in self.rows if r.get("date (UTC)") != row["date (UTC)"]]
        self.rows.append(row)
        self.rows.sort(key=lambda r: r.get("date (UTC)", ""))

    def render(self) -> list[str]:
        if not self.rows:
            return []
        known = [*HISTORY_FIXED, *(h[0] for h in HISTORY_HEADLINES), *HISTORY_TAIL]
        columns = known + [c for c in self.columns if c not in known]
        lines = [
            "",
            HISTORY_HEADING,
            "",
            "Every full run of `./scripts/bench` adds a line (kept when the report above is"
            " rewritten); the ratios are the table's, on the machine of the day, whose raw signing"
            " rate is given. A ratio followed by (no) missed its target.",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + " --- |" * len(columns),
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(row.get(c, "") for c in columns) + " |")
        return lines


def history_row(ctx: Context, started: dt.datetime) -> dict[str, str]:
    """This run's line in the history table."""
    sign = (ctx.raw.get("ceilings") or {}).get("rsa2048_sign", {}).get("per_s")
    row = {
        "date (UTC)": started.strftime("%Y-%m-%d %H:%M"),
        "raw RSA-2048 signs/s": f"{sign:,.0f}" if sign else "",
    }
    for column, scenario, prefix in HISTORY_HEADLINES:
        for r in ctx.rows:
            if r.scenario == scenario and r.name.startswith(prefix) and r.ratio is not None:
                row[column] = f"{r.ratio:.2f}" + (" (no)" if r.passed is False else "")
                break
    judged = [r for r in ctx.rows if r.passed is not None]
    row["targets met"] = f"{sum(1 for r in judged if r.passed)} of {len(judged)}"
    row["load at start"] = str(ctx.raw.get("machine", {}).get("load_average_at_start", ""))
    return row


def previous_history(out: Path) -> History:
    """The history table of the report ``out`` replaces (empty when there is none)."""
    try:
        return History.parse(out.read_text())
    except OSError:
        return History()


def kept_sections(report: str) -> list[str]:
    """The sections of an earlier report headed by one of KEPT_HEADINGS, each up to the next
    ``## `` heading, as lines (a blank line before each)."""
    lines = report.splitlines()
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() in KEPT_HEADINGS:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("## "):
                j += 1
            kept += ["", *lines[i:j]]
            while kept and not kept[-1].strip():
                kept.pop()
            i = j
        else:
            i += 1
    return kept


def with_kept_sections(report: str, out: Path) -> str:
    """``report`` followed by the kept sections of the report at ``out`` that it replaces."""
    try:
        kept = kept_sections(out.read_text())
    except OSError:
        kept = []
    return report.rstrip("\n") + "\n" + "\n".join(kept) + "\n" if kept else report
