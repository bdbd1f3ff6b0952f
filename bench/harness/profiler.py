"""--profile: py-spy samples a server during a measured run; a summary of its hottest frames."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness.config import Config, Context, pin
from bench.harness.processes import Server


@dataclass
class Profile:
    proc: subprocess.Popen[bytes]
    out: Path
    what: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def start(cfg: Config, server: Server, what: str) -> Profile | None:
    """py-spy recording ``server`` for one measurement, on the load CPU (None without py-spy)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists() or server.proc is None:
        print("    (py-spy not found: pip install py-spy, or ./scripts/bench --profile)")
        return None
    out = cfg.run_dir / f"profile-{_slug(what)}.txt"
    cmd = [
        exe,
        "record",
        "--pid",
        str(server.proc.pid),
        "--duration",
        str(cfg.duration),
        "--rate",
        "250",
        "--nonblocking",
        "--subprocesses",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    with (cfg.run_dir / f"profile-{_slug(what)}.log").open("wb") as log:
        proc = subprocess.Popen(pin(cfg.load_cpus, cmd, cfg), stdout=log, stderr=subprocess.STDOUT)
    return Profile(proc, out, what)


def finish(ctx: Context, prof: Profile) -> None:
    """Waits for py-spy, writes and prints the summary of what it recorded."""
    try:
        prof.proc.wait(timeout=ctx.cfg.duration + 30)
    except subprocess.TimeoutExpired:
        prof.proc.kill()
        prof.proc.wait()
    if not prof.out.exists():
        print(f"    py-spy wrote no profile for {prof.what} (see {prof.out.with_suffix('.log')})")
        return
    summary = summarize(prof.out)
    summary_path = prof.out.with_name(prof.out.stem + "-summary.txt")
    summary_path.write_text(summary)
    ctx.raw.setdefault("profiles", {})[prof.what] = {
        "raw": str(prof.out),
        "summary": str(summary_path),
    }
    print(f"    py-spy profile of the server during '{prof.what}' ({prof.out}):")
    print("\n".join("      " + line for line in summary.splitlines()[:32]))


def summarize(raw: Path, top: int = 25) -> str:
    """Collapsed stacks ("frame;frame;frame count") -> top self and inclusive frames."""
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        self_t[frames[-1]] = self_t.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return "(empty profile)"
    lines = [f"{total} samples", "", "self %  frame"]
    for f, c in sorted(self_t.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * c / total:6.1f}  {f}")
    lines += ["", "incl %  frame"]
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * c / total:6.1f}  {f}")
    return "\n".join(lines) + "\n"
