"""What the report says about the machine and the software: CPU, memory, load, versions."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from bench.harness import peer

# The Python distributions whose versions the report lists.
DISTRIBUTIONS = ("keyhouse", "uvicorn", "starlette", "uvloop", "httptools", "cryptography", "PyJWT")


def _cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "?"


def cpu_busy_percent(seconds: float = 1.0) -> float:
    """Whole-machine CPU use over `seconds` from /proc/stat (other work skews the numbers)."""

    def snap() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return -1.0
    return round(100.0 * (1 - (i1 - i0) / max(1, t1 - t0)), 1)


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    load = "unknown"
    with contextlib.suppress(OSError, IndexError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "load_average_at_start": load,
        "cpu_busy_before_start": f"{cpu_busy_percent():.0f}%",
        "uname": " ".join(platform.uname()),
        "uname_a": _cmd_out(["uname", "-a"]),
        "cpu_model": cpu,
        "cpus": str(os.cpu_count()),
        "memory": mem,
    }


def versions() -> dict[str, str]:
    v: dict[str, str] = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = "not installed"
    with contextlib.suppress(Exception):
        from cryptography.hazmat.backends.openssl.backend import backend

        v["OpenSSL (cryptography)"] = backend.openssl_version_text()
    v["node"] = _cmd_out(["node", "--version"])
    v["oidc-provider"] = peer.version()
    v["wrk"] = _cmd_out(["wrk", "-v"]).split(" [")[0]
    return v


def busy(machine: dict[str, str]) -> float | None:
    """How busy the machine was just before the run, in percent (None: not measured)."""
    try:
        pct = float(machine.get("cpu_busy_before_start", "").rstrip("%"))
    except ValueError:
        return None
    return pct if pct >= 0 else None
