"""Scenario 0: the ceilings, measured in-process on the server core (bench/ceilings.py, and
Node's own signing rate for the peer, bench/peer/sign_ceiling.js)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

from bench.harness import peer
from bench.harness.config import BENCH, PEER_DIR, ROOT, BenchError, Config, Context, Row, Scenario
from bench.harness.config import pin as pinned

METHOD = (
    "Raw signs/s: RSA-2048 PKCS#1 v1.5 SHA-256 through `cryptography` in one process on the"
    " server core (bench/ceilings.py)."
)


def _run_ceilings(cfg: Config, seconds: float, *extra: str, timeout: float = 300) -> dict[str, Any]:
    """bench/ceilings.py on the server core; its JSON."""
    cmd = [sys.executable, str(BENCH / "ceilings.py"), "--seconds", str(seconds), *extra]
    if cfg.pinned:
        cmd += ["--cpu", cfg.server_cpus.split(",")[0].split("-")[0]]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if proc.returncode != 0:
        raise BenchError(f"ceilings.py exited {proc.returncode}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def sign_rate(ctx: Context) -> float:
    """Raw RSA-2048 signs/s through cryptography on the server core, measured now."""
    cfg = ctx.cfg
    seconds = max(1.0, cfg.ceiling_seconds / 2) if not cfg.quick else cfg.ceiling_seconds
    rate = float(
        _run_ceilings(cfg, seconds, "--only", "sign", timeout=120)["rsa2048_sign"]["per_s"]
    )
    ctx.raw.setdefault("sign_ceilings", []).append(rate)
    print(f"    raw RSA-2048 sign now: {rate:,.0f}/s", flush=True)
    return rate


def ceilings(ctx: Context) -> dict[str, Any]:
    """In-process ceilings on the server core: raw RSA sign/verify, PyJWT decode (once a run)."""
    if "ceilings" in ctx.memo:
        return dict(ctx.memo["ceilings"])
    cfg = ctx.cfg
    data: dict[str, Any] = {}
    for _ in range(max(1, cfg.repeat)):  # best of --repeat, per measurement
        one = _run_ceilings(cfg, cfg.ceiling_seconds)
        for k, v in one.items():
            better = isinstance(v, dict) and v.get("per_s", 0) > data.get(k, {}).get("per_s", -1)
            if k not in data or better:
                data[k] = v
    if peer.installed() and shutil.which("node"):
        peer.copy_scripts()
        node_cmd = pinned(
            cfg.server_cpus.split(",")[0],
            ["node", str(PEER_DIR / "sign_ceiling.js"), str(cfg.ceiling_seconds)],
            cfg,
        )
        p = subprocess.run(node_cmd, capture_output=True, text=True, timeout=120, check=False)
        if p.returncode == 0:
            data["node_rsa2048_sign"] = json.loads(p.stdout)["rsa2048_sign"]
    ctx.memo["ceilings"] = data
    ctx.raw["ceilings"] = data
    return data


def run(ctx: Context) -> None:
    """Ceilings measured in-process on the server core (reference numbers for the ratios)."""
    c = ceilings(ctx)
    sign = c["rsa2048_sign"]["per_s"]
    verify = c["rsa2048_verify"]["per_s"]
    ctx.add(Row("0", "raw RSA-2048 sign, cryptography (PKCS1v15/SHA-256)", f"{sign:,.0f} /s"))
    ctx.add(Row("0", "raw RSA-2048 verify, cryptography", f"{verify:,.0f} /s"))
    if c.get("pyjwt_decode"):
        dec = c["pyjwt_decode"]["per_s"]
        ctx.add(
            Row(
                "0",
                "PyJWT decode RS256 (in-process) vs raw verify",
                f"{dec:,.0f} /s",
                f"{verify:,.0f} /s",
                round(dec / verify, 3),
            )
        )
    if c.get("node_rsa2048_sign"):
        node_sign = c["node_rsa2048_sign"]["per_s"]
        ctx.add(
            Row(
                "0",
                "raw RSA-2048 sign, Node crypto (the peer's own ceiling)",
                f"{node_sign:,.0f} /s",
                f"{sign:,.0f} /s",
                round(node_sign / sign, 3),
            )
        )


SCENARIO = Scenario("0", run, METHOD, needs_wrk=False)
