"""Keyhouse benchmarks (issue 7): every number a ratio against a ceiling or a peer, same run.

Driven by `./scripts/bench` (which makes the venv, installs wrk and the node-oidc-provider peer).
Servers run as subprocesses pinned with `taskset` to the server core(s) (default CPU 0), wrk to the
load core(s) (default CPU 1). Each of issue 7's seven scenarios is one function below; the ones that
need features the app does not have yet are clearly named TODO functions and show up as TODO rows.

    python bench/run.py [--quick] [--only ceilings,token,...] [--duration 15] [--out PATH]

Writes docs/benchmarks.md after a full run of every scenario (--quick, --profile and --only/--skip
runs write to bench/results/ unless --out is given), and bench/results/latest.json with the raw
numbers. Exit status: 0 when every selected scenario ran (targets missed or not), 1 when a
scenario failed to run, or, with --strict, when a target was missed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
PEER_SRC = BENCH / "peer"
PEER_DIR = BENCH / ".peer"  # npm installs here (gitignored)
RESULTS = BENCH / "results"  # gitignored

# Values the scenarios share.
AUDIENCE = "photos"
SCOPE = "photos:read"
# Scenario 7's paced /healthz probe: one connection, this long between requests (<= ~200/s).
PROBE_DELAY_MS = 5
PEER_CLIENT_ID = "bench-client"
PEER_CLIENT_SECRET = "bench-secret-" + secrets.token_hex(16)
PEER_RESOURCE = "urn:keyhouse:photos"

# The verified-token cache's size knob (RESOURCE_TOKEN_CACHE_SIZE; 0 disables it). Scenario 2
# measures /whoami with the cache off and on.
TOKEN_CACHE_OFF_ENV: dict[str, str] = {"RESOURCE_TOKEN_CACHE_SIZE": "0"}
TOKEN_CACHE_ON_ENV: dict[str, str] = {"RESOURCE_TOKEN_CACHE_SIZE": "10000"}


class BenchError(RuntimeError):
    """A scenario could not be measured (server did not start, requests failed, ...)."""


class TodoScenario(Exception):
    """A scenario that needs an app feature not built yet."""


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


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
    rounds: int = 3  # alternations per ratio (B A B ... B), see alternate()


@dataclass
class Row:
    scenario: str  # "1", "2", ...
    name: str
    measured: str
    reference: str = ""  # ceiling or peer
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target / informational / TODO
    note: str = ""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    def short(self) -> str:
        return f"{self.rps:,.0f} req/s (p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms)"


@dataclass
class Context:
    cfg: Config
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f" ratio={row.ratio:.2f}"
        verdict = {True: " PASS", False: " FAIL", None: ""}[row.passed]
        print(f"  [{row.scenario}] {row.name}: {row.measured}{ratio}{verdict}", flush=True)


def check(ratio: float, op: str, target: float) -> bool:
    return ratio >= target if op == ">=" else ratio > target


# --------------------------------------------------------------------------------------------
# Processes, HTTP, wrk
# --------------------------------------------------------------------------------------------


def pin(cpus: str, cmd: list[str], cfg: Config) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cfg.pinned else cmd


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def http(
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if form is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: form-urlencode each part, then Basic.
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Server:
    """A server subprocess in its own session (so workers die with it), pinned, logged to a file."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        cfg: Config,
        *,
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        cpus: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = pin(cpus or cfg.server_cpus, cmd, cfg)
        self.port = port
        self.ready_url = f"http://127.0.0.1:{port}{ready_path}"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or ROOT
        # A stack's servers log into the stack's own directory (one per scenario).
        self.log_path = (cwd or cfg.run_dir) / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        if not port_free(self.port):
            raise BenchError(f"{self.name}: port {self.port} is already in use (try --base-port)")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            try:
                http("GET", self.ready_url, timeout=1.0)
                return self  # any HTTP answer means it listens
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in lines[-n:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Workers of a multi-worker server may outlive the parent briefly.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wrk_cmd(
    cfg: Config,
    url: str,
    script: str,
    seconds: int,
    connections: int,
    threads: int,
    timeout_s: int = 10,
) -> list[str]:
    threads = max(1, min(threads, connections))
    return pin(
        cfg.load_cpus,
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            f"{timeout_s}s",
            "-s",
            str(WRK_DIR / script),
            url,
        ],
        cfg,
    )


def parse_wrk(output: str) -> WrkResult:
    m = re.search(r"^BENCH_JSON (\{.*\})$", output, re.MULTILINE)
    if not m:
        raise BenchError("wrk printed no BENCH_JSON line:\n" + output[-2000:])
    data = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errs = data["errors"]
    lat = data["latency_us"]
    seconds = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
    )


def start_wrk(
    cfg: Config,
    url: str,
    script: str,
    env: dict[str, str] | None = None,
    *,
    seconds: int | None = None,
    connections: int | None = None,
    threads: int | None = None,
    timeout_s: int = 10,
) -> subprocess.Popen[str]:
    cmd = _wrk_cmd(
        cfg,
        url,
        script,
        seconds or cfg.duration,
        connections or cfg.connections,
        threads or cfg.threads,
        timeout_s,
    )
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish_wrk(
    proc: subprocess.Popen[str], seconds: int, what: str, *, allow_errors: bool = False
) -> WrkResult:
    """wrk's result; refused when errors (or, unless ``allow_errors``, no answers) dominate."""
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise BenchError(f"wrk ({what}) did not finish:\n{out[-2000:]}") from None
    if proc.returncode != 0:
        raise BenchError(f"wrk ({what}) exited {proc.returncode}:\n{out[-2000:]}")
    res = parse_wrk(out)
    if res.requests == 0 and not allow_errors:
        raise BenchError(f"wrk ({what}) completed no request:\n{out[-2000:]}")
    bad = res.socket_errors if allow_errors else res.non_2xx + res.socket_errors
    if bad > max(5, res.requests // 100):
        raise BenchError(
            f"wrk ({what}): {res.non_2xx} non-2xx and {res.socket_errors} socket errors "
            f"in {res.requests} requests; the numbers would be meaningless"
        )
    return res


def run_wrk(
    ctx: Context,
    what: str,
    url: str,
    script: str,
    env: dict[str, str] | None = None,
    *,
    connections: int | None = None,
    threads: int | None = None,
    warmup: bool = True,
    profile: Server | None = None,
) -> WrkResult:
    """Warm-up, then one measured wrk run. With --profile and a server, py-spy samples that
    server during the measured run (on the load CPU) and a summary is printed."""
    cfg = ctx.cfg
    if warmup and cfg.warmup > 0:
        w = start_wrk(
            cfg, url, script, env, seconds=cfg.warmup, connections=connections, threads=threads
        )
        finish_wrk(w, cfg.warmup, what + " warm-up")
    prof = start_profiler(cfg, profile, what) if cfg.profile and profile else None
    runs: list[WrkResult] = []
    for _ in range(max(1, cfg.repeat)):
        proc = start_wrk(cfg, url, script, env, connections=connections, threads=threads)
        runs.append(finish_wrk(proc, cfg.duration, what))
        if prof is not None:
            break  # the profiler covers the first measured run only
    res = max(runs, key=lambda r: r.rps)  # best of --repeat: other load only ever slows a run
    ctx.raw.setdefault("wrk", {})[what] = asdict(res)
    if len(runs) > 1:
        ctx.raw.setdefault("wrk_all_runs", {})[what] = [r.rps for r in runs]
    print(
        f"    wrk {what}: {res.short()}"
        + (f" (best of {', '.join(f'{r.rps:,.0f}' for r in runs)})" if len(runs) > 1 else ""),
        flush=True,
    )
    if prof is not None:
        finish_profiler(ctx, *prof)
    return res


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def start_profiler(
    cfg: Config, server: Server, what: str
) -> tuple[subprocess.Popen[bytes], Path, str] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists() or server.proc is None:
        print("    (py-spy not found: pip install py-spy, or ./scripts/bench --profile)")
        return None
    out = cfg.run_dir / f"profile-{_slug(what)}.txt"
    cmd = [exe, "record", "--pid", str(server.proc.pid), "--duration", str(cfg.duration),
           "--rate", "250", "--nonblocking", "--subprocesses", "--format", "raw",
           "--output", str(out)]  # fmt: skip
    log = (cfg.run_dir / f"profile-{_slug(what)}.log").open("wb")
    proc = subprocess.Popen(pin(cfg.load_cpus, cmd, cfg), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, out, what


def finish_profiler(ctx: Context, proc: subprocess.Popen[bytes], out: Path, what: str) -> None:
    try:
        proc.wait(timeout=ctx.cfg.duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not out.exists():
        print(f"    py-spy wrote no profile for {what} (see {out.with_suffix('.log')})")
        return
    summary = summarize_profile(out)
    summary_path = out.with_name(out.stem + "-summary.txt")
    summary_path.write_text(summary)
    ctx.raw.setdefault("profiles", {})[what] = {"raw": str(out), "summary": str(summary_path)}
    print(f"    py-spy profile of the server during '{what}' ({out}):")
    print("\n".join("      " + line for line in summary.splitlines()[:32]))


def summarize_profile(raw: Path, top: int = 25) -> str:
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


# --------------------------------------------------------------------------------------------
# The stack under test (through CONTRACT.md only)
# --------------------------------------------------------------------------------------------


@dataclass
class Client:
    client_id: str
    client_secret: str

    @property
    def authorization(self) -> str:
        return basic(self.client_id, self.client_secret)


class Stack:
    """A private issuer data dir plus helpers to run the CLI and servers against it."""

    def __init__(self, ctx: Context, label: str) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.cfg.run_dir))
        self.issuer_port = self.cfg.base_port
        self.resource_port = self.cfg.base_port + 1
        self.issuer_url = f"http://127.0.0.1:{self.issuer_port}"
        self.env = {
            "ISSUER_URL": self.issuer_url,
            "ISSUER_DATABASE_URL": f"sqlite:///{self.dir / 'issuer.db'}",
            "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
            "ISSUER_ACCESS_TOKEN_TTL": "3600",
        }
        self._initialised = False

    def cli(self, args: list[str], stdin: str | None = None) -> str:
        if not self._initialised and args[:1] != ["init"]:
            self._initialised = True  # only `issuer init` and `issuer serve` create the store
            self.cli(["init"])
        cmd = [*self.cfg.issuer_cmd, *args]
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            cwd=self.dir,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"`{shlex.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def create_client(
        self, name: str, grants: tuple[str, ...] = ("client_credentials",), scope: str = SCOPE
    ) -> Client:
        args = ["clients", "create", "--name", name, "--scope", scope, "--audience", AUDIENCE]
        for g in grants:
            args += ["--grant", g]
        out = self.cli([*args, "--json"])
        try:
            data = json.loads(out)
        except json.JSONDecodeError as exc:
            raise BenchError(f"`issuer clients create --json` printed no JSON: {out!r}") from exc
        return Client(data["client_id"], data["client_secret"])

    def create_user(self, username: str, password: str, scope: str = SCOPE) -> None:
        self.cli(
            ["users", "create", username, "--password-stdin", "--scope", scope], password + "\n"
        )

    def issuer(self, workers: int = 1, cpus: str | None = None) -> Server:
        cmd = [
            *self.cfg.issuer_cmd,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.issuer_port),
        ]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        return Server(
            f"issuer-w{workers}",
            cmd,
            self.cfg,
            port=self.issuer_port,
            ready_path="/healthz",
            env=self.env,
            cpus=cpus,
            cwd=self.dir,
        )

    def resource(
        self, workers: int = 1, env: dict[str, str] | None = None, cpus: str | None = None
    ) -> Server:
        cmd = [
            *self.cfg.resource_cmd,
            "serve",
            "--name",
            AUDIENCE,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.resource_port),
        ]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        renv = {
            "RESOURCE_NAME": AUDIENCE,
            "RESOURCE_ISSUER": self.issuer_url,
            **(env or {}),
        }
        return Server(
            f"resource-{AUDIENCE}-w{workers}",
            cmd,
            self.cfg,
            port=self.resource_port,
            ready_path="/healthz",
            env=renv,
            cpus=cpus,
            cwd=self.dir,
        )

    def token_body(self) -> str:
        return urllib.parse.urlencode(
            {"grant_type": "client_credentials", "audience": AUDIENCE, "scope": SCOPE}
        )

    def get_token(self, client: Client) -> str:
        status, _, body = http(
            "POST",
            f"{self.issuer_url}/token",
            form={"grant_type": "client_credentials", "audience": AUDIENCE, "scope": SCOPE},
            headers={"Authorization": client.authorization},
        )
        if status != 200:
            raise BenchError(f"POST /token answered {status}: {body[:300]!r}")
        token = json.loads(body)["access_token"]
        check_rs256(token, "issuer")
        return str(token)


def check_rs256(token: str, who: str) -> dict[str, Any]:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, IndexError) as exc:
        raise BenchError(f"{who} returned something that is not a JWT: {token[:60]!r}") from exc
    if header.get("alg") != "RS256":
        raise BenchError(f"{who} token header is {header}, expected alg RS256")
    return dict(header)


def expect_ok(url: str, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = http("GET", url, headers=headers)
    if status != 200:
        raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")


# --------------------------------------------------------------------------------------------
# The peer: node-oidc-provider
# --------------------------------------------------------------------------------------------


def peer_installed() -> bool:
    return (PEER_DIR / "node_modules" / "oidc-provider" / "package.json").exists()


def peer_server(cfg: Config) -> Server:
    if not peer_installed():
        raise BenchError(
            "node-oidc-provider peer not installed in bench/.peer (./scripts/bench does it)"
        )
    for f in ("server.js", "sign_ceiling.js"):
        shutil.copy2(PEER_SRC / f, PEER_DIR / f)  # ESM resolves oidc-provider next to the script
    port = cfg.base_port + 100
    return Server(
        "peer-oidc-provider",
        ["node", str(PEER_DIR / "server.js"), "--port", str(port)],
        cfg,
        port=port,
        ready_path="/.well-known/openid-configuration",
        env={
            "NODE_ENV": "production",
            "PEER_CLIENT_ID": PEER_CLIENT_ID,
            "PEER_CLIENT_SECRET": PEER_CLIENT_SECRET,
            "PEER_RESOURCE": PEER_RESOURCE,
        },
    )


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Ratios on a drifting machine
# --------------------------------------------------------------------------------------------


@dataclass
class Alternation:
    """A measured against B as B A B A ... A B: each A run is divided by the mean of the two B
    runs around it, and the ratio reported is the median of those. The speed of a shared machine
    drifts by tens of percent within minutes; measured far apart, A and B would compare two
    different machines."""

    a: list[float]
    b: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / ((self.b[i] + self.b[i + 1]) / 2) for i, a in enumerate(self.a)]

    @property
    def ratio(self) -> float:
        # The lower median: with an even number of runs, the worse of the two middle ones (the
        # run the table shows), never an average of two runs.
        return statistics.median_low(self.ratios)

    @property
    def median_index(self) -> int:
        return self.ratios.index(self.ratio)

    def b_around(self, i: int) -> float:
        return (self.b[i] + self.b[i + 1]) / 2

    def note(self) -> str:
        runs = ", ".join(f"{r:.2f}" for r in self.ratios)
        return f"alternated B A B ({len(self.a)} A runs); ratios {runs}; the median run is shown"


def alternate(
    rounds: int, run_a: Callable[[int], float], run_b: Callable[[int], float]
) -> Alternation:
    """Measures B, then ``rounds`` times A and B. Each callable gets its run's index (0 first:
    warm up then) and returns a rate."""
    b = [run_b(0)]
    a: list[float] = []
    for i in range(max(1, rounds)):
        a.append(run_a(i))
        b.append(run_b(i + 1))
    return Alternation(a, b)


def _run_ceilings(cfg: Config, seconds: float, *extra: str, timeout: float = 300) -> dict[str, Any]:
    """bench/ceilings.py on the server core; its JSON."""
    cmd = [sys.executable, str(BENCH / "ceilings.py"), "--seconds", str(seconds), *extra]
    if cfg.pinned:
        cmd += ["--cpu", cfg.server_cpus.split(",")[0].split("-")[0]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
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
    """In-process ceilings on the server core: raw RSA sign/verify, PyJWT decode."""
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
    if peer_installed() and shutil.which("node"):
        shutil.copy2(PEER_SRC / "sign_ceiling.js", PEER_DIR / "sign_ceiling.js")
        node_cmd = pin(
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


def scenario_0_ceilings(ctx: Context) -> None:
    """Ceilings measured in-process on the server core (reference numbers for the ratios)."""
    c = ceilings(ctx)
    sign = c["rsa2048_sign"]["per_s"]
    ctx.add(Row("0", "raw RSA-2048 sign, cryptography (PKCS1v15/SHA-256)", f"{sign:,.0f} /s"))
    ctx.add(
        Row("0", "raw RSA-2048 verify, cryptography", f"{c['rsa2048_verify']['per_s']:,.0f} /s")
    )
    if c.get("pyjwt_decode"):
        dec = c["pyjwt_decode"]["per_s"]
        verify = c["rsa2048_verify"]["per_s"]
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


def scenario_1_token_endpoint(ctx: Context) -> None:
    """POST /token (client_credentials, 1 worker) vs raw signs/s and vs node-oidc-provider;
    JWKS GET req/s vs the peer's."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s1")
    client = stack.create_client("bench-s1")
    kh_runs: list[WrkResult] = []
    with stack.issuer(workers=1) as iss:
        stack.get_token(client)  # also checks alg RS256
        env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}

        def keyhouse(i: int) -> float:
            res = run_wrk(
                ctx,
                "keyhouse POST /token",
                f"{stack.issuer_url}/token",
                "token.lua",
                env,
                warmup=i == 0,
                profile=iss if i == 0 else None,
            )
            kh_runs.append(res)
            return res.rps

        kh_alt = alternate(cfg.rounds, keyhouse, lambda _i: sign_rate(ctx))
        expect_ok(f"{stack.issuer_url}/.well-known/jwks.json")
        kh_jwks = run_wrk(
            ctx, "keyhouse GET jwks", f"{stack.issuer_url}/.well-known/jwks.json", "bearer.lua"
        )
    kh = kh_runs[kh_alt.median_index]
    ctx.memo["issuer_token_w1"] = kh
    ctx.raw["token_vs_sign"] = asdict(kh_alt)
    ctx.add(
        Row(
            "1",
            "issuer POST /token, client_credentials, 1 worker, vs raw RSA signs",
            kh.short(),
            f"{kh_alt.b_around(kh_alt.median_index):,.0f} signs/s",
            round(kh_alt.ratio, 3),
            ">= 0.75",
            check(kh_alt.ratio, ">=", 0.75),
            note=kh_alt.note(),
        )
    )

    try:
        peer = peer_server(cfg)
    except BenchError as exc:
        ctx.add(Row("1", "peer node-oidc-provider", "not measured", note=str(exc)))
        return
    peer_url = f"http://127.0.0.1:{peer.port}"
    pr_runs: list[WrkResult] = []
    with peer:
        status, _, body = http(
            "POST",
            f"{peer_url}/token",
            form={"grant_type": "client_credentials", "resource": PEER_RESOURCE, "scope": SCOPE},
            headers={"Authorization": basic(PEER_CLIENT_ID, PEER_CLIENT_SECRET)},
        )
        if status != 200:
            raise BenchError(f"peer POST /token answered {status}: {body[:300]!r}")
        check_rs256(json.loads(body)["access_token"], "peer")
        penv = {
            "BENCH_AUTHORIZATION": basic(PEER_CLIENT_ID, PEER_CLIENT_SECRET),
            "BENCH_BODY": urllib.parse.urlencode(
                {"grant_type": "client_credentials", "resource": PEER_RESOURCE, "scope": SCOPE}
            ),
        }

        def peer_token(i: int) -> float:
            res = run_wrk(
                ctx, "peer POST /token", f"{peer_url}/token", "token.lua", penv, warmup=i == 0
            )
            pr_runs.append(res)
            return res.rps

        pr_alt = alternate(cfg.rounds, peer_token, lambda _i: sign_rate(ctx))
        expect_ok(f"{peer_url}/jwks")
        pr_jwks = run_wrk(ctx, "peer GET jwks", f"{peer_url}/jwks", "bearer.lua")
    pr = pr_runs[pr_alt.median_index]
    ctx.raw["peer_token_vs_sign"] = asdict(pr_alt)
    ctx.add(
        Row(
            "1",
            "peer node-oidc-provider POST /token (1 process) vs raw RSA signs",
            pr.short(),
            f"{pr_alt.b_around(pr_alt.median_index):,.0f} signs/s",
            round(pr_alt.ratio, 3),
            "(issue quotes ~0.65)",
            None,
            note=pr_alt.note(),
        )
    )
    # Each side against the signing ceiling measured around it, so machine drift between the
    # two measurements cancels out.
    kp = kh_alt.ratio / pr_alt.ratio
    ctx.add(
        Row(
            "1",
            "tokens/s Keyhouse / node-oidc-provider (each per raw sign measured around it)",
            f"{kh.rps:,.0f} tok/s",
            f"{pr.rps:,.0f} tok/s",
            round(kp, 3),
            "> 1.0",
            check(kp, ">", 1.0),
            note=f"raw tok/s ratio {kh.rps / pr.rps:.2f}",
        )
    )
    jp = kh_jwks.rps / pr_jwks.rps
    ctx.add(
        Row(
            "1",
            "JWKS GET req/s Keyhouse / node-oidc-provider",
            kh_jwks.short(),
            pr_jwks.short(),
            round(jp, 3),
            "(report)",
            None,
        )
    )


def _whoami_vs_healthz(ctx: Context, label: str, cache_env: dict[str, str]) -> None:
    stack = Stack(ctx, f"s2-{label}")
    client = stack.create_client(f"bench-s2-{label}")
    who_runs: list[WrkResult] = []
    health_runs: list[WrkResult] = []
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        with stack.resource(workers=1, env=cache_env) as rs:
            url = f"http://127.0.0.1:{rs.port}"
            expect_ok(f"{url}/whoami", token)  # also fills the JWKS cache

            def whoami(i: int) -> float:
                res = run_wrk(
                    ctx,
                    f"resource /whoami ({label})",
                    f"{url}/whoami",
                    "bearer.lua",
                    {"BENCH_TOKEN": token},
                    warmup=i == 0,
                    profile=rs if i == 0 else None,
                )
                who_runs.append(res)
                return res.rps

            def healthz(i: int) -> float:
                res = run_wrk(
                    ctx,
                    f"resource /healthz ({label})",
                    f"{url}/healthz",
                    "bearer.lua",
                    warmup=i == 0,
                )
                health_runs.append(res)
                return res.rps

            alt = alternate(ctx.cfg.rounds, whoami, healthz)
    who = who_runs[alt.median_index]
    ctx.memo[f"whoami_{label}"] = who
    target = 0.5 if label == "no cache" else 0.85
    ctx.add(
        Row(
            "2",
            f"resource GET /whoami vs its /healthz, {label}",
            who.short(),
            f"{alt.b_around(alt.median_index):,.0f} req/s",
            round(alt.ratio, 3),
            f">= {target}",
            check(alt.ratio, ">=", target),
            note=alt.note(),
        )
    )


def scenario_2_whoami_vs_healthz(ctx: Context) -> None:
    """/whoami with a valid token vs the unauthenticated /healthz: >= 0.5 without the
    verified-token cache, >= 0.85 with it."""
    _whoami_vs_healthz(ctx, "no cache", TOKEN_CACHE_OFF_ENV)
    _whoami_vs_healthz(ctx, "token cache", TOKEN_CACHE_ON_ENV)


def scenario_3_vs_pyjwt_baseline(ctx: Context) -> None:
    """/whoami of Keyhouse's resource service vs a Starlette app verifying with PyJWT's
    PyJWKClient (bench/baseline_pyjwt_app.py): >= 1.5x."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s3")
    client = stack.create_client("bench-s3")
    baseline_port = cfg.base_port + 9
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        baseline = Server(
            "baseline-pyjwt",
            [sys.executable, str(BENCH / "baseline_pyjwt_app.py"), "--port", str(baseline_port)],
            cfg,
            port=baseline_port,
            ready_path="/healthz",
            env={"BASELINE_ISSUER": stack.issuer_url, "BASELINE_AUDIENCE": AUDIENCE},
        )
        with baseline:
            base_url = f"http://127.0.0.1:{baseline_port}/whoami"
            expect_ok(base_url, token)
            base_runs: list[WrkResult] = []

            def base(i: int) -> float:
                res = run_wrk(
                    ctx,
                    "baseline PyJWKClient /whoami",
                    base_url,
                    "bearer.lua",
                    {"BENCH_TOKEN": token},
                    warmup=i == 0,
                )
                base_runs.append(res)
                return res.rps

            # Both servers are up at once (pinned to the same core; the idle one sleeps) so the
            # two sides can alternate: once verifying every request, once as deployed.
            for label, env, target in (
                ("cache off", TOKEN_CACHE_OFF_ENV, 1.5),
                ("as deployed: verified-token cache on", TOKEN_CACHE_ON_ENV, None),
            ):
                kh_runs: list[WrkResult] = []
                with stack.resource(workers=1, env=env) as rs:
                    url = f"http://127.0.0.1:{rs.port}/whoami"
                    expect_ok(url, token)

                    def keyhouse(i: int, url: str = url, runs: list[WrkResult] = kh_runs) -> float:
                        res = run_wrk(
                            ctx,
                            "resource /whoami (s3)",
                            url,
                            "bearer.lua",
                            {"BENCH_TOKEN": token},
                            warmup=i == 0,
                        )
                        runs.append(res)
                        return res.rps

                    alt = alternate(cfg.rounds, keyhouse, base)
                kh = kh_runs[alt.median_index]
                ctx.add(
                    Row(
                        "3",
                        f"resource /whoami ({label}) vs PyJWT PyJWKClient Starlette baseline",
                        kh.short(),
                        f"{alt.b_around(alt.median_index):,.0f} req/s",
                        round(alt.ratio, 3),
                        f">= {target}" if target else "(report)",
                        check(alt.ratio, ">=", target) if target else None,
                        note=alt.note(),
                    )
                )


# The resource service's unknown-kid refetch cooldown (shared/jwks_client.py, default 30 s):
# scenario 4 checks "JWKS fetches <= 1 per cooldown" against it.
KID_COOLDOWN_SECONDS: float = 30.0
KID_COOLDOWN_ENV: dict[str, str] = {
    "RESOURCE_JWKS_UNKNOWN_KID_COOLDOWN": f"{KID_COOLDOWN_SECONDS:g}"
}
KID_FLOOD_TOKENS = 10_000
FLOOD_CONNECTIONS = 4


class JwksCountingProxy:
    """A tiny HTTP proxy in front of the issuer's JWKS that counts the resource service's fetches
    (set as RESOURCE_JWKS_URL, which skips discovery per CONTRACT.md)."""

    def __init__(self, upstream: str, port: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream
        self.port = port
        self.fetches: list[float] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.fetches.append(time.monotonic())
                headers = {k: v for k, v in self.headers.items() if k.lower() == "if-none-match"}
                status, up_headers, body = http("GET", proxy.upstream, headers=headers)
                self.send_response(status)
                for k, v in up_headers.items():
                    if k.lower() in ("content-type", "cache-control", "etag"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def count_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.fetches if t0 <= t <= t1)

    def __enter__(self) -> JwksCountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_random_kid_tokens(path: Path, n: int, issuer: str) -> Path:
    """Writes n JWTs to path, one per line, each with a random kid the issuer never had. The
    signature is 256 random bytes: a verifier must reject these on the unknown kid alone."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    with path.open("w") as f:
        for _ in range(n):
            header = {"alg": "RS256", "typ": "at+jwt", "kid": secrets.token_urlsafe(32)}
            claims = {
                "iss": issuer,
                "sub": "flood",
                "aud": AUDIENCE,
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "jti": secrets.token_hex(8),
                "client_id": "flood",
                "scope": SCOPE,
            }
            parts = [
                b64(json.dumps(header, separators=(",", ":")).encode()),
                b64(json.dumps(claims, separators=(",", ":")).encode()),
                b64(secrets.token_bytes(256)),
            ]
            f.write(".".join(parts) + "\n")
    return path


def scenario_4_kid_flood(ctx: Context) -> None:
    """A flood of 10,000 tokens with random kids: JWKS fetches <= 1 per cooldown, and valid-token
    throughput during the flood >= 0.8 of without."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s4")
    client = stack.create_client("bench-s4")
    tokens_file = make_random_kid_tokens(
        stack.dir / "random-kid-tokens.txt", KID_FLOOD_TOKENS, stack.issuer_url
    )
    # The flood: KID_FLOOD_TOKENS distinct random kids, cycled as fast as FLOOD_CONNECTIONS
    # connections go, beside the usual valid load (cfg.connections). A wrk-side pause per request
    # (BENCH_DELAY_MS) would cap the rate, but then the rate depends on the server's latency.
    flood_conns = FLOOD_CONNECTIONS
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        proxy = JwksCountingProxy(f"{stack.issuer_url}/.well-known/jwks.json", cfg.base_port + 50)
        with proxy:
            # The resource service as deployed: default cache settings, counted JWKS fetches.
            env = {**KID_COOLDOWN_ENV, "RESOURCE_JWKS_URL": proxy.url}
            with stack.resource(workers=1, env=env) as rs:
                url = f"http://127.0.0.1:{rs.port}/whoami"
                expect_ok(url, token)
                status, _, _ = http(
                    "GET",
                    url,
                    headers={"Authorization": "Bearer " + tokens_file.read_text().split()[0]},
                )
                if status != 401:
                    raise BenchError(f"a random-kid token got {status} from /whoami, not 401")
                calm_runs: list[WrkResult] = []
                during_runs: list[WrkResult] = []
                flood_runs: list[WrkResult] = []
                windows: list[tuple[float, float, int]] = []

                def calm(i: int) -> float:
                    res = run_wrk(
                        ctx,
                        "valid /whoami, no flood",
                        url,
                        "bearer.lua",
                        {"BENCH_TOKEN": token},
                        warmup=i == 0,
                    )
                    calm_runs.append(res)
                    return res.rps

                def flooded(i: int) -> float:
                    prof = (
                        start_profiler(cfg, rs, "resource during kid flood")
                        if cfg.profile and i == 0
                        else None
                    )
                    t0 = time.monotonic()
                    flood = start_wrk(
                        cfg,
                        url,
                        "tokens_file.lua",
                        {"BENCH_TOKENS_FILE": str(tokens_file)},
                        connections=flood_conns,
                    )
                    valid = start_wrk(cfg, url, "bearer.lua", {"BENCH_TOKEN": token})
                    during = finish_wrk(valid, cfg.duration, "valid /whoami during kid flood")
                    fl = finish_wrk(flood, cfg.duration, "kid flood", allow_errors=True)
                    t1 = time.monotonic()
                    windows.append((t0, t1, proxy.count_between(t0, t1)))
                    if prof is not None:
                        finish_profiler(ctx, *prof)
                    print(
                        f"    valid during the flood: {during.short()}; flood {fl.rps:,.0f}"
                        f" req/s, {fl.non_2xx} rejected; JWKS fetches {windows[-1][2]}",
                        flush=True,
                    )
                    during_runs.append(during)
                    flood_runs.append(fl)
                    return during.rps

                alt = alternate(cfg.rounds, flooded, calm)
                total_fetches = len(proxy.fetches)
    during = during_runs[alt.median_index]
    fl = flood_runs[alt.median_index]
    fetches = sum(w[2] for w in windows)
    flood_requests = sum(f.requests for f in flood_runs)
    ctx.raw.setdefault("wrk", {})["valid /whoami during kid flood"] = asdict(during)
    ctx.raw.setdefault("wrk", {})["kid flood"] = asdict(fl)
    ctx.raw["kid_flood"] = {
        "jwks_fetches": fetches,
        "jwks_fetches_total": total_fetches,
        "windows_s": [round(w[1] - w[0], 2) for w in windows],
        "fetches_per_window": [w[2] for w in windows],
        "ratios": alt.ratios,
    }
    ctx.add(
        Row(
            "4",
            f"valid /whoami during a flood of {KID_FLOOD_TOKENS:,} random-kid tokens"
            f" ({fl.requests:,} requests on {flood_conns} connections) vs without",
            during.short(),
            f"{alt.b_around(alt.median_index):,.0f} req/s",
            round(alt.ratio, 3),
            ">= 0.8",
            check(alt.ratio, ">=", 0.8),
            note=f"flood {fl.rps:,.0f} req/s; " + alt.note(),
        )
    )
    window = sum(w[1] - w[0] for w in windows)
    if KID_COOLDOWN_SECONDS:
        allowed = sum(int((w[1] - w[0]) // KID_COOLDOWN_SECONDS) + 1 for w in windows)
        target, passed = f"<= {allowed} (1 per {KID_COOLDOWN_SECONDS:g} s)", fetches <= allowed
    else:
        target, passed = "<= 1 per cooldown (cooldown knob not set in bench/run.py)", None
    ctx.add(
        Row(
            "4",
            f"JWKS fetches by the resource service during {len(windows)} floods ({window:.0f} s)",
            f"{fetches} fetches ({flood_requests:,} random-kid requests)",
            target=target,
            passed=passed,
        )
    )


def _process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of pid's children, or of pid itself when it has none."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for p in kids or [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _worker_split(before: dict[int, float], after: dict[int, float]) -> str:
    used = [after[p] - before.get(p, 0.0) for p in after]
    total = sum(used) or 1.0
    used = [u for u in used if u / total >= 0.01]  # leave out helpers (e.g. resource tracker)
    return "CPU split between workers: " + " / ".join(f"{100 * u / total:.0f}%" for u in used)


def _scaling(
    ctx: Context, what: str, alt: Alternation, two: list[WrkResult], split: str = ""
) -> None:
    i = alt.median_index
    ctx.add(
        Row(
            "5",
            f"{what}: 2 workers vs 1" + (f" ({split})" if split else ""),
            two[i].short(),
            f"{alt.b_around(i):,.0f} req/s",
            round(alt.ratio, 3),
            "(report; 2 cores, wrk shares one)",
            None,
            note=alt.note(),
        )
    )


def scenario_5_workers(ctx: Context) -> None:
    """One vs two workers for both services: scaling factor. The machine has two cores, so with
    two workers the server gets both and wrk shares CPU 1 with one of them (noted in the doc)."""
    cfg = ctx.cfg
    both = "0-1" if cfg.pinned else None
    stack = Stack(ctx, "s5")
    client = stack.create_client("bench-s5")
    env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}
    url = f"{stack.issuer_url}/token"
    splits: dict[str, str] = {}
    issuer_two: list[WrkResult] = []

    def issuer_run(workers: int) -> Callable[[int], float]:
        def run(_i: int) -> float:
            with stack.issuer(workers=workers, cpus=both if workers == 2 else None) as iss:
                assert iss.proc is not None
                cpu0 = _process_tree_cpu(iss.proc.pid)
                res = run_wrk(
                    ctx, f"keyhouse POST /token, {workers} worker(s)", url, "token.lua", env
                )
                if workers == 2:
                    splits["issuer"] = _worker_split(cpu0, _process_tree_cpu(iss.proc.pid))
                    issuer_two.append(res)
            return res.rps

        return run

    alt = alternate(cfg.rounds, issuer_run(2), issuer_run(1))
    _scaling(ctx, "issuer POST /token", alt, issuer_two, splits.get("issuer", ""))

    resource_two: list[WrkResult] = []
    with stack.issuer(workers=1):
        token = stack.get_token(client)

        def resource_run(workers: int) -> Callable[[int], float]:
            def run(_i: int) -> float:
                cpus = both if workers == 2 else None
                with stack.resource(workers=workers, env=TOKEN_CACHE_OFF_ENV, cpus=cpus) as rs:
                    rurl = f"http://127.0.0.1:{rs.port}/whoami"
                    for _ in range(2 * workers):  # each worker fetches the JWKS first
                        expect_ok(rurl, token)
                    assert rs.proc is not None
                    cpu0 = _process_tree_cpu(rs.proc.pid)
                    res = run_wrk(
                        ctx,
                        f"resource /whoami, {workers} worker(s)",
                        rurl,
                        "bearer.lua",
                        {"BENCH_TOKEN": token},
                    )
                    if workers == 2:
                        splits["resource"] = _worker_split(cpu0, _process_tree_cpu(rs.proc.pid))
                        resource_two.append(res)
                return res.rps

            return run

        ralt = alternate(cfg.rounds, resource_run(2), resource_run(1))
    _scaling(ctx, "resource GET /whoami", ralt, resource_two, splits.get("resource", ""))


MEMORY_CACHE_SIZE = 10_000  # RESOURCE_TOKEN_CACHE_SIZE for scenario 6 (the app's default)


def scenario_6_memory_1m_tokens(ctx: Context) -> None:
    """Resource service memory after 1,000,000 distinct valid tokens: bounded by the
    verified-token cache size setting (RSS stops growing once the cache is full)."""
    import mass_tokens as mt  # bench/mass_tokens.py

    cfg = ctx.cfg
    n = cfg.memory_tokens
    key = mt.BenchIssuerKey()
    jwks_port = cfg.base_port + 60
    bench_iss = f"http://127.0.0.1:{jwks_port}"
    t0 = time.perf_counter()
    tokens = mt.mint_tokens(
        key,
        n,
        bench_iss,
        AUDIENCE,
        SCOPE,
        progress=lambda k: (
            print(f"    minted {k:,}/{n:,}", flush=True) if k % 100_000 == 0 else None
        ),
    )
    mint_s = time.perf_counter() - t0
    print(f"    minted {n:,} tokens in {mint_s:.0f} s", flush=True)
    stack = Stack(ctx, "s6")
    samples: list[tuple[int, int]] = []
    with mt.StaticJwksServer(key.jwks, jwks_port) as jwks:
        env = {
            "RESOURCE_ISSUER": bench_iss,
            "RESOURCE_JWKS_URL": jwks.url,
            "RESOURCE_TOKEN_CACHE_SIZE": str(MEMORY_CACHE_SIZE),
        }
        with stack.resource(workers=1, env=env) as rs:
            assert rs.proc is not None
            pid = rs.proc.pid
            url = f"http://127.0.0.1:{rs.port}/whoami"
            expect_ok(url, tokens[0].decode())
            samples.append((0, mt.rss_bytes(pid)))

            def checkpoint(done: int) -> None:
                samples.append((done, mt.rss_bytes(pid)))

            before = os.sched_getaffinity(0)
            if cfg.pinned:
                os.sched_setaffinity(0, _cpu_set(cfg.load_cpus))
            try:
                statuses, send_s = mt.send_each_once(
                    "127.0.0.1",
                    rs.port,
                    "/whoami",
                    tokens,
                    connections=16,
                    checkpoint_every=max(1, n // 10),
                    on_checkpoint=checkpoint,
                )
            finally:
                os.sched_setaffinity(0, before)
            samples.append((n, mt.rss_bytes(pid)))
    del tokens
    ok = statuses.get(200, 0)
    ctx.raw["memory"] = {
        "tokens": n,
        "cache_size": MEMORY_CACHE_SIZE,
        "statuses": statuses,
        "mint_seconds": round(mint_s, 1),
        "send_seconds": round(send_s, 1),
        "rss_samples": samples,
    }
    if ok < n * 0.99:
        raise BenchError(f"only {ok:,} of {n:,} distinct tokens were accepted: {statuses}")
    mib = 1024 * 1024
    start_rss = samples[0][1]
    half = min(samples, key=lambda s: abs(s[0] - n // 2))
    end_rss = samples[-1][1]
    growth_2nd_half = end_rss - half[1]
    # docs/resource-service-config.md: worst case about size x RESOURCE_MAX_TOKEN_BYTES (8192).
    bound = MEMORY_CACHE_SIZE * 8192 + 16 * mib
    flat = max(16 * mib, 0.1 * half[1])
    bounded_test = n >= 4 * MEMORY_CACHE_SIZE
    print(
        "    RSS MiB at "
        + ", ".join(f"{d:,}: {r / mib:.0f}" for d, r in samples)
        + f" ({n / send_s:,.0f} req/s)",
        flush=True,
    )
    ctx.add(
        Row(
            "6",
            f"resource RSS after {n:,} distinct valid tokens (cache size {MEMORY_CACHE_SIZE:,})",
            f"{end_rss / mib:.0f} MiB (start {start_rss / mib:.0f}, at {half[0]:,}:"
            f" {half[1] / mib:.0f}; growth {(end_rss - start_rss) / mib:+.0f},"
            f" 2nd half {growth_2nd_half / mib:+.1f})",
            f"size x 8 KiB = {MEMORY_CACHE_SIZE * 8192 / mib:.0f} MiB",
            None,
            f"growth <= {bound / mib:.0f} MiB, 2nd half <= {flat / mib:.0f} MiB"
            if bounded_test
            else f"(needs >= {4 * MEMORY_CACHE_SIZE:,} tokens)",
            (end_rss - start_rss <= bound and growth_2nd_half <= flat) if bounded_test else None,
        )
    )


def _cpu_set(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


# Scenario 7's targets: logins inside a flood of cheap requests, and beside the token load, are
# answered at this fraction of their rate alone at least, with a p99 under this many ms.
LOGIN_SHARE_TARGET = 0.25
LOGIN_P99_TARGET_MS = 5000.0
PROBE_P99_TARGET_MS = 10.0
LOGIN_CONNECTIONS = 8
# wrk's --timeout for the logins: a login slower than this counts as a timeout, not a latency,
# so the timeout is well above the p99 target and a timed-out login fails the p99.
LOGIN_TIMEOUT_S = 10


def login_p99(res: WrkResult) -> tuple[float, str]:
    """The logins' p99 in ms, counting every login wrk gave up on (after LOGIN_TIMEOUT_S) as
    slower than all the others: wrk's percentiles leave timed-out requests out."""
    answered = res.requests
    timed_out = res.socket_errors
    if answered == 0:
        return math.inf, "none answered"
    if timed_out * 100 > answered + timed_out:  # more than 1% never answered in time
        return math.inf, f">= {LOGIN_TIMEOUT_S} s ({timed_out} timed out)"
    return res.p99_ms, f"{res.p99_ms:,.0f} ms"


def scenario_7_password_latency(ctx: Context) -> None:
    """Password logins (8 at once) alone, beside a paced /healthz probe, inside a closed-loop
    /healthz flood and beside a client_credentials POST /token load: answered at >= 0.25 of
    their rate alone with p99 < 5 s, probe p99 < 10 ms."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s7")
    client = stack.create_client("bench-s7", grants=("password",))
    token_client = stack.create_client("bench-s7-token")
    password = secrets.token_urlsafe(18)
    stack.create_user("bench-user", password)
    body = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "username": "bench-user",
            "password": password,
            "audience": AUDIENCE,
            "scope": SCOPE,
        }
    )
    # Password hashing is slow by design: give even a --quick run time for many logins.
    login_secs = max(cfg.duration, 8)
    env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": body}
    token_env = {
        "BENCH_AUTHORIZATION": token_client.authorization,
        "BENCH_BODY": stack.token_body(),
    }

    def start_logins() -> subprocess.Popen[str]:
        url = f"{stack.issuer_url}/token"
        return start_wrk(
            cfg,
            url,
            "token.lua",
            env,
            seconds=login_secs,
            connections=LOGIN_CONNECTIONS,
            threads=1,
            timeout_s=LOGIN_TIMEOUT_S,
        )

    def start_health(seconds: int, delay_ms: int = 0) -> subprocess.Popen[str]:
        env = {"BENCH_DELAY_MS": str(delay_ms)} if delay_ms else None
        url = f"{stack.issuer_url}/healthz"
        return start_wrk(cfg, url, "bearer.lua", env, seconds=seconds, connections=1, threads=1)

    def drain() -> None:
        # wrk stops waiting, the server does not: let the last queued checks finish.
        time.sleep(3.0)

    def alone(what: str) -> WrkResult:
        res = finish_wrk(start_logins(), login_secs, what)
        drain()
        return res

    def beside(
        what: str, start_other: Callable[[], subprocess.Popen[str]], other: str
    ) -> tuple[WrkResult, WrkResult]:
        """Logins inside another load that started a second before them and ends after."""
        load = start_other()
        time.sleep(1.0)
        logins = finish_wrk(start_logins(), login_secs, what, allow_errors=True)
        res = finish_wrk(load, login_secs + 2, other)
        drain()
        return logins, res

    alone_runs: list[WrkResult] = []
    with stack.issuer(workers=1):
        status, _, resp = http(
            "POST",
            f"{stack.issuer_url}/token",
            form=dict(urllib.parse.parse_qsl(body)),
            headers={"Authorization": client.authorization},
        )
        if status != 200:
            raise BenchError(f"password grant answered {status}: {resp[:300]!r}")
        stack.get_token(token_client)
        # Alone, then each load with the logins inside it, alone again after each (B A B A B):
        # each ratio is to the mean of the two alone runs around it.
        alone_runs.append(alone("password grant x8 alone"))
        # 1. A paced probe (one connection, PROBE_DELAY_MS between requests) leaves the logins
        #    most of the core, so both latencies are measured at once.
        logins = start_logins()
        time.sleep(1.0)  # let the logins saturate first
        health_secs = login_secs - 2
        probe = start_health(health_secs, PROBE_DELAY_MS)
        h_probe = finish_wrk(probe, health_secs, "issuer /healthz probe during logins")
        p = finish_wrk(logins, login_secs, "password grant x8 beside the probe")
        drain()
        # 2. A closed-loop flood takes every cycle it can: the logins run inside it.
        fl, h_flood = beside(
            "password grant x8 in the flood",
            lambda: start_health(login_secs + 2),
            "issuer /healthz flood during logins",
        )
        alone_runs.append(alone("password grant x8 alone (2)"))
        # 3. The token endpoint's usual load, on as many connections as the logins.
        tk, tok_load = beside(
            "password grant x8 beside the token load",
            lambda: start_wrk(
                cfg,
                f"{stack.issuer_url}/token",
                "token.lua",
                token_env,
                seconds=login_secs + 2,
                connections=LOGIN_CONNECTIONS,
            ),
            "POST /token client_credentials x8 during logins",
        )
        alone_runs.append(alone("password grant x8 alone (3)"))
    runs = {
        "password grant x8 alone": alone_runs[0],
        "password grant x8": p,
        "issuer /healthz during logins": h_probe,
        "password grant x8 in the flood": fl,
        "issuer /healthz flood during logins": h_flood,
        "password grant x8 alone (2)": alone_runs[1],
        "password grant x8 beside the token load": tk,
        "POST /token client_credentials x8 during logins": tok_load,
        "password grant x8 alone (3)": alone_runs[2],
    }
    for what, res in runs.items():
        ctx.raw.setdefault("wrk", {})[what] = asdict(res)
        print(f"    wrk {what}: {res.short()}", flush=True)

    def logins_per_s(res: WrkResult) -> str:
        return f"{res.rps:,.2f} logins/s"

    ctx.add(
        Row(
            "7",
            f"password grant, {LOGIN_CONNECTIONS} concurrent logins, nothing else",
            f"p50 {alone_runs[0].p50_ms:,.0f} ms, p99 {alone_runs[0].p99_ms:,.0f} ms"
            f" ({logins_per_s(alone_runs[0])})",
            target="(report)",
            note="alone runs before, between and after the loads: "
            + ", ".join(logins_per_s(r) for r in alone_runs),
        )
    )
    ctx.add(
        Row(
            "7",
            f"password grant, {LOGIN_CONNECTIONS} concurrent logins, beside the paced /healthz"
            " probe below",
            f"p50 {p.p50_ms:,.0f} ms, p99 {p.p99_ms:,.0f} ms ({logins_per_s(p)})",
            target="(report)",
        )
    )
    ctx.add(
        Row(
            "7",
            f"issuer /healthz during those logins, paced probe ({h_probe.rps:,.0f} req/s)",
            f"p50 {h_probe.p50_ms:.2f} ms, p99 {h_probe.p99_ms:.2f} ms,"
            f" max {h_probe.max_ms:.1f} ms",
            target=f"p99 < {PROBE_P99_TARGET_MS:g} ms",
            passed=h_probe.p99_ms < PROBE_P99_TARGET_MS,
        )
    )
    target = f">= {LOGIN_SHARE_TARGET} and p99 < {LOGIN_P99_TARGET_MS / 1000:g} s"
    for i, (what, res, load) in enumerate(
        (
            (
                f"logins inside a closed-loop /healthz flood ({h_flood.rps:,.0f} req/s on 1"
                " connection) vs alone",
                fl,
                h_flood,
            ),
            (
                f"logins beside {LOGIN_CONNECTIONS} connections of client_credentials POST /token"
                f" ({tok_load.rps:,.0f} req/s) vs alone",
                tk,
                tok_load,
            ),
        )
    ):
        ref = (alone_runs[i].rps + alone_runs[i + 1].rps) / 2
        ratio = res.rps / ref if ref else 0.0
        p99, p99_text = login_p99(res)
        ctx.add(
            Row(
                "7",
                what,
                f"{logins_per_s(res)} (p50 {res.p50_ms:,.0f} ms, p99 {p99_text})",
                f"{ref:,.2f} logins/s",
                round(ratio, 3),
                target,
                ratio >= LOGIN_SHARE_TARGET and p99 < LOGIN_P99_TARGET_MS,
                note=f"{res.requests} logins answered in {res.seconds:.0f} s,"
                f" {res.socket_errors} timed out or failed; the load meanwhile: {load.short()}",
            )
        )
    ctx.add(
        Row(
            "7",
            "issuer /healthz flood during those logins (its own latency)",
            f"p50 {h_flood.p50_ms:.2f} ms, p99 {h_flood.p99_ms:.2f} ms,"
            f" max {h_flood.max_ms:.1f} ms",
            target="(report)",
        )
    )


def scenario_8_slow_clients(ctx: Context) -> None:
    """Slow and idle clients (trickled heads and bodies, then thousands of half-open connections
    from a few addresses) beside the usual POST /token and /whoami load: throughput with / without
    >= 0.9, and no slow connection open past its deadline + 1 s (bench/slow_clients.py)."""
    import slow_clients  # bench/slow_clients.py

    slow_clients.scenario(ctx, sys.modules[__name__])


# name -> (scenario number, function). Order is the run order.
SCENARIOS: dict[str, tuple[str, Callable[[Context], None]]] = {
    "ceilings": ("0", scenario_0_ceilings),
    "token": ("1", scenario_1_token_endpoint),
    "whoami": ("2", scenario_2_whoami_vs_healthz),
    "baseline": ("3", scenario_3_vs_pyjwt_baseline),
    "kidflood": ("4", scenario_4_kid_flood),
    "workers": ("5", scenario_5_workers),
    "memory": ("6", scenario_6_memory_1m_tokens),
    "password": ("7", scenario_7_password_latency),
    "slowclients": ("8", scenario_8_slow_clients),
}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


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
    for dist in (
        "keyhouse",
        "uvicorn",
        "starlette",
        "uvloop",
        "httptools",
        "cryptography",
        "PyJWT",
    ):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = "not installed"
    with contextlib.suppress(Exception):
        from cryptography.hazmat.backends.openssl.backend import backend

        v["OpenSSL (cryptography)"] = backend.openssl_version_text()
    v["node"] = _cmd_out(["node", "--version"])
    pkg = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
    v["oidc-provider"] = json.loads(pkg.read_text())["version"] if pkg.exists() else "not installed"
    v["wrk"] = _cmd_out(["wrk", "-v"]).split(" [")[0]
    return v


def busy_banner(busy: str) -> list[str]:
    try:
        pct = float(busy.rstrip("%"))
    except ValueError:
        return []
    if pct <= 10:
        return []
    return [
        f"> **Warning:** the machine was {busy} busy with other work just before this run, so",
        "> these numbers (ratios included: a ceiling and a measurement may see different load)",
        "> are not representative. Re-run on an otherwise idle machine.",
        "",
    ]


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


def fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}"


def fmt_pass(p: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[p]


def render(
    ctx: Context,
    started: dt.datetime,
    todo: list[tuple[str, str, str]],
    failed: list[tuple[str, str, str]],
    history: History | None = None,
) -> str:
    cfg = ctx.cfg
    m = ctx.raw["machine"]
    v = ctx.raw["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `./scripts/bench` (bench/run.py); every number below was measured in the",
        "same run on the same machine. Reproduce with `./scripts/bench` (all scenarios, about 45",
        "minutes, most of it minting scenario 6's tokens) or `./scripts/bench --only token` for",
        "one scenario; `--quick` is a smoke run, not a measurement. See bench/README.md.",
        "",
        *busy_banner(m.get("cpu_busy_before_start", "")),
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Mode: {'QUICK smoke run (numbers not meaningful)' if cfg.quick else 'full'};"
        f" {cfg.duration} s per measurement after {cfg.warmup} s warm-up;"
        f" wrk -t{cfg.threads} -c{cfg.connections} unless noted"
        + (f"; best of {cfg.repeat} runs per throughput" if cfg.repeat > 1 else ""),
        f"- Machine: `{m['uname_a']}`",
        f"- CPU: {m['cpu_model']} ({m['cpus']} CPUs), memory {m['memory']};"
        f" load average at start {m['load_average_at_start']}, CPU busy just before the run"
        f" {m['cpu_busy_before_start']} (other work on the machine skews every number)",
        "- Pinning: "
        + (
            f"servers and in-process ceilings on CPU {cfg.server_cpus}, wrk on CPU {cfg.load_cpus}"
            " (`taskset`); scenario 5's two-worker runs give the server CPUs 0-1, so wrk shares"
            " a core with one worker"
            if cfg.pinned
            else "none (fewer than 2 CPUs)"
        ),
        "- Server options: uvicorn `--loop uvloop --http httptools --no-access-log` (the `serve`"
        " defaults); the peer runs with NODE_ENV=production",
        "",
        "## Versions",
        "",
        "| component | version |",
        "| --- | --- |",
        *[f"| {k} | {val} |" for k, val in v.items()],
        "",
        "## Results",
        "",
        "Ratio = measured / (ceiling or peer). Scenario 0 rows are the ceilings themselves.",
        "",
        "| # | scenario | measured | ceiling / peer | ratio | target | pass |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ctx.rows:
        lines.append(
            f"| {r.scenario} | {r.name} | {r.measured} | {r.reference} | {fmt_ratio(r.ratio)} "
            f"| {r.target} | {fmt_pass(r.passed)} |"
        )
    noted = [r for r in ctx.rows if r.note]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- {r.scenario} {r.name}: {r.note}" for r in noted]
    if todo:
        lines += ["", "## Not measured yet", ""]
        lines += [f"- {num} `{name}`: {why}" for num, name, why in todo]
    if failed:
        lines += ["", "## Failed to run", ""]
        lines += [f"- {num} `{name}`: {why.splitlines()[0]}" for num, name, why in failed]
    lines += (history or History()).render()
    lines += [
        "",
        "## Method",
        "",
        "- Token endpoint: `POST /token` with `grant_type=client_credentials&audience=photos&"
        "scope=photos:read` and client_secret_basic (bench/wrk/token.lua). The peer is"
        " node-oidc-provider (bench/peer/server.js) issuing an RS256 JWT access token for an"
        " RFC 8707 resource indicator, one process, same client auth and scope.",
        "- Raw signs/s: RSA-2048 PKCS#1 v1.5 SHA-256 through `cryptography` in one process on the"
        " server core (bench/ceilings.py).",
        "- Drift: this kind of shared machine changes speed by tens of percent from one minute to"
        " the next, so every ratio alternates its two sides, B A B ... A B, divides each A run by"
        " the mean of the B runs just before and after it, and reports the median (the Notes"
        " list every run's ratio). For /token, B is raw signing measured on the server core"
        " right then; Keyhouse/peer divides the two normalised ratios, so a slow minute for one"
        " side does not count against it.",
        "- Resource service: `GET /whoami` with one valid bearer token vs `GET /healthz`"
        " (bench/wrk/bearer.lua); the baseline is bench/baseline_pyjwt_app.py (PyJWT"
        " `PyJWKClient`).",
        "- Kid flood: 10,000 tokens whose headers carry random kids (bench/wrk/tokens_file.lua"
        " cycles through them, unthrottled, on 4 connections) while the usual 32 connections"
        " send one valid token; the resource service reaches the JWKS through a counting proxy"
        " (RESOURCE_JWKS_URL), which gives the fetch count.",
        "- Memory: the bench mints N distinct valid tokens with its own RSA-2048 key (published"
        " as a JWKS by a local server the resource service is pointed at), sends each once over"
        " 16 keep-alive connections (bench/mass_tokens.py), and samples the service's RSS"
        " (/proc, workers included) ten times along the way.",
        "- Password grant: wrk with 8 connections on `POST /token` (grant_type=password), first"
        " alone; then beside a paced `GET /healthz` probe (1 connection, a request every"
        f" {PROBE_DELAY_MS} ms after the previous answer), both latencies measured at once; then"
        " inside a closed-loop `/healthz` flood (1 connection, no pause) and beside 8 connections"
        " of `client_credentials` `POST /token`, each load started a second before the logins and"
        " stopped after them, with a run alone between and after the loads (B A B A B: each"
        " ratio divides by the two alone runs around it). The issuer hashes at idle CPU priority"
        " and guarantees the checks in progress a share of the core (README, `FairShare`): the"
        f" logins inside each load must keep >= {LOGIN_SHARE_TARGET} of their rate alone with"
        f" p99 < {LOGIN_P99_TARGET_MS / 1000:g} s (wrk --timeout {LOGIN_TIMEOUT_S}s: a login"
        " slower than that counts against the p99, never out of it), and the paced probe"
        f" p99 < {PROBE_P99_TARGET_MS:g} ms. The flood's own latency is reported: the loop"
        " pauses for the logins then.",
        "- Every run checks the first response by hand and rejects a measurement with more than 1%"
        " non-2xx answers or socket errors (the logins inside a load excepted: their timeouts"
        " count against their p99).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Keyhouse benchmarks (issue 7)")
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
        help="issuer=BASE, resource=BASE+1, baseline=BASE+9, peer=BASE+100",
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
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during Keyhouse's measured runs (perturbs the numbers; the report"
        " then goes to bench/results/ unless --out is given)",
    )
    return ap.parse_args(argv)


def make_config(args: argparse.Namespace, run_dir: Path) -> Config:
    venv_bin = Path(sys.executable).parent
    issuer_cmd = shlex.split(os.environ.get("BENCH_ISSUER_CMD", str(venv_bin / "issuer")))
    resource_cmd = shlex.split(
        os.environ.get("BENCH_RESOURCE_CMD", str(venv_bin / "resource-service"))
    )
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
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
        pinned=pinned,
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


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    d = RESULTS / f"run-{stamp}-{os.getpid()}"
    d.mkdir(parents=True)
    yield d


# Hand-written sections of docs/benchmarks.md that a report carries over unchanged (the long
# fuzz run is not a scenario of this script: bench/fuzz.py).
KEPT_HEADINGS = ("## Fuzzing",)


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


def previous_history(out: Path) -> History:
    """The history table of the report ``out`` replaces (empty when there is none)."""
    try:
        return History.parse(out.read_text())
    except OSError:
        return History()


def is_full(raw: dict[str, Any]) -> bool:
    """A run of every scenario, neither quick nor profiled: the runs the history records."""
    conf = raw.get("config", {})
    ran = {r["scenario"] if isinstance(r, dict) else r.scenario for r in raw.get("rows", [])}
    ran |= {num for num, _name, _why in raw.get("failed", [])}
    wanted = {num for num, _fn in SCENARIOS.values()}
    return not (conf.get("quick") or conf.get("profile")) and wanted <= ran


def render_saved(raw: dict[str, Any], history: History | None = None) -> str:
    """The report of an earlier run, from the JSON it saved; with ``history``, that table
    (plus this run's line if it was a full run)."""
    conf = dict(raw["config"])
    conf["run_dir"] = Path(conf["run_dir"])
    ctx = Context(Config(**conf), rows=[Row(**r) for r in raw["rows"]], raw=raw)
    stamp = re.search(r"run-(\d{8}T\d{6}Z)", str(conf["run_dir"]))
    started = (
        dt.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        if stamp
        else dt.datetime.now(dt.UTC)
    )
    if history is not None and is_full(raw):
        history.add(history_row(ctx, started))
    return render(ctx, started, raw.get("todo", []), raw.get("failed", []), history)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only is not None:
        out = args.out or ROOT / "docs" / "benchmarks.md"
        report = render_saved(json.loads(args.render_only.read_text()), previous_history(out))
        report = with_kept_sections(report, out)
        out.write_text(report)
        print(f"bench: wrote {out}")
        return 0
    if args.list:
        for name, (num, fn) in SCENARIOS.items():
            doc = (fn.__doc__ or "").strip().splitlines()[0]
            print(f"{num} {name:10s} {doc}")
        return 0
    names = selected(args)
    started = dt.datetime.now(dt.UTC)
    with run_directory() as run_dir:
        cfg = make_config(args, run_dir)
        ctx = Context(cfg)
        ctx.raw["machine"] = machine_info()
        busy = ctx.raw["machine"]["cpu_busy_before_start"]
        if busy.rstrip("%").lstrip("-").isdigit() and int(busy.rstrip("%")) > 10:
            print(
                f"bench: WARNING: the machine is {busy} busy before the run; numbers will be"
                " skewed",
                file=sys.stderr,
            )
        ctx.raw["versions"] = versions()
        ctx.raw["config"] = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
        }
        print(
            f"bench: {', '.join(names)}; {cfg.duration}s per measurement; logs in {run_dir}",
            flush=True,
        )
        if any(n not in ("ceilings",) for n in names) and not shutil.which("wrk"):
            print("bench: wrk not found (./scripts/bench installs it)", file=sys.stderr)
            return 1
        todo: list[tuple[str, str, str]] = []
        failed: list[tuple[str, str, str]] = []
        for name in names:
            num, fn = SCENARIOS[name]
            print(f"== {num} {name}", flush=True)
            try:
                fn(ctx)
            except TodoScenario as exc:
                todo_fn = exc.args[1] if len(exc.args) > 1 else fn.__name__
                todo.append((num, todo_fn, str(exc.args[0])))
                ctx.add(Row(num, f"TODO `{todo_fn}`: {exc.args[0]}", "not measured"))
            except (BenchError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
                msg = str(exc) or type(exc).__name__
                failed.append((num, name, msg))
                print(f"  [{num}] {name} FAILED: {msg}", file=sys.stderr, flush=True)
                if not isinstance(exc, BenchError):
                    traceback.print_exc()
        ctx.raw["rows"] = [asdict(r) for r in ctx.rows]
        ctx.raw["todo"] = todo
        ctx.raw["failed"] = failed
        # Only a full, unprofiled run of every scenario replaces docs/benchmarks.md by default.
        full = not (cfg.quick or cfg.profile) and names == list(SCENARIOS)
        out = args.out or (
            ROOT / "docs" / "benchmarks.md"
            if full
            else RESULTS / ("benchmarks-quick.md" if cfg.quick else "benchmarks-partial.md")
        )
        # The report replaces the one at ``out``, but its history table is carried over, with
        # this run's line added when it was a full run.
        history = previous_history(out)
        if full:
            history.add(history_row(ctx, started))
        report = render(ctx, started, todo, failed, history)
        report = with_kept_sections(report, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(ctx.raw, indent=2) + "\n")
        (run_dir / "report.md").write_text(report)
    print()
    table = report.split("## Results", 1)[1]
    print("\n".join(line for line in table.splitlines() if line.startswith("|")))
    print(f"\nbench: wrote {out} and {args.json_out}")
    if failed:
        return 1
    if args.strict and any(r.passed is False for r in ctx.rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
