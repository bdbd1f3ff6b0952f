"""HAProxy in front of issuer replicas, as the compose stack runs it: Debian's ``haproxy`` with
the repository's docker/haproxy/haproxy.cfg, its addresses from the KEYHOUSE_LB_* variables
(docker/haproxy/haproxy.cfg's header), everything else as shipped (its access-log default
included), pinned to the server CPUs like the replicas (or to CPUs of the caller's choice).
Ready once every backend server of ``issuers`` is UP (HAProxy's CSV stats). The replicas behind
it run as compose runs them: trusting the balancer's X-Forwarded-* headers (``REPLICA_ARGS``)."""

from __future__ import annotations

import csv
import io
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from bench.harness.config import ROOT, BenchError, Config
from bench.harness.processes import Server, port_in_use
from bench.harness.stack import Stack, bench_server

HAPROXY_CFG = ROOT / "docker" / "haproxy" / "haproxy.cfg"
BACKEND = "issuers"  # haproxy.cfg's backend for /token (key discovery has its own)
ADMIN_OFFSET = 30  # the stats port: the balancer's port + this
REPLICA_OFFSET = 20  # replica i listens on the base port + 20 + i (the balancer on the base port)
READY_TIMEOUT = 30.0
# compose.yaml's issuer command line beyond host and port: the replicas trust X-Forwarded-*.
REPLICA_ARGS = ("--forwarded-allow-ips", "*")


def haproxy_missing() -> str | None:
    """Why no balancer can run here (None: it can)."""
    if shutil.which("haproxy") is None:
        return "haproxy not installed (apt-get install haproxy)"
    if not HAPROXY_CFG.is_file():
        return f"{HAPROXY_CFG.relative_to(ROOT)} is missing"
    return None


def backend_states(stats_csv: str, backend: str = BACKEND) -> dict[str, str]:
    """Server name -> status of ``backend`` from HAProxy's ``/stats;csv`` ("UP", "DOWN", or
    on the way: "UP 1/2" is up but failing its checks, "DOWN 1/2" down but passing them)."""
    rows = csv.DictReader(io.StringIO(stats_csv.lstrip("# ")))
    return {
        r["svname"]: (r.get("status") or "").strip()
        for r in rows
        if r.get("pxname") == backend and r.get("svname") not in ("FRONTEND", "BACKEND")
    }


@dataclass
class Balancer:
    server: Server
    url: str  # where clients connect
    stats_url: str

    def states(self) -> dict[str, str]:
        with urllib.request.urlopen(self.stats_url, timeout=2) as resp:
            return backend_states(resp.read().decode())

    def wait_all_up(self, timeout: float = READY_TIMEOUT) -> None:
        """Returns once every replica of the backend passed its readiness checks."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                states = self.states()
            except (OSError, urllib.error.URLError):
                states = {}
            if states and all(s == "UP" for s in states.values()):
                return
            time.sleep(0.2)
        raise BenchError(
            f"HAProxy's replicas did not all come UP within {timeout:g}s: {states or 'no stats'}"
            f"\n{self.server.log_tail()}"
        )


@contextmanager
def balancer(
    cfg: Config,
    port: int,
    replicas: list[int],
    name: str = "haproxy",
    *,
    access_log: str | None = None,
    cpus: str | None = None,
) -> Iterator[Balancer]:
    """HAProxy on 127.0.0.1:``port`` in front of the replicas on these ports (the config has two
    server lines: one replica fills both, so all traffic reaches that one process);
    ``access_log``: KEYHOUSE_LB_ACCESS_LOG (default: unset, the config's own default); ``cpus``:
    where it runs (default: the server CPUs, beside the replicas)."""
    why = haproxy_missing()
    if why:
        raise BenchError(why)
    if not 1 <= len(replicas) <= 2:
        raise BenchError(f"haproxy.cfg balances one or two replicas, not {len(replicas)}")
    if port_in_use(port):
        raise BenchError(f"{name}: port {port} is already in use")
    first, second = replicas[0], replicas[-1]
    admin = port + ADMIN_OFFSET
    env = {
        "KEYHOUSE_LB_BIND": f"127.0.0.1:{port}",
        "KEYHOUSE_LB_ISSUER1": f"127.0.0.1:{first}",
        "KEYHOUSE_LB_ISSUER2": f"127.0.0.1:{second}",
        "KEYHOUSE_LB_ADMIN_BIND": f"127.0.0.1:{admin}",
    }
    if access_log is not None:
        env["KEYHOUSE_LB_ACCESS_LOG"] = access_log
    cmd = ["haproxy", "-db", "-f", str(HAPROXY_CFG)]
    server = bench_server(cfg, name, cmd, port=admin, env=env, ready_path="/stats;csv", cpus=cpus)
    lb = Balancer(server, f"http://127.0.0.1:{port}", f"{server.url}/stats;csv")
    with server:
        lb.wait_all_up()
        yield lb


def replica_port(cfg: Config, i: int) -> int:
    return cfg.base_port + REPLICA_OFFSET + i


@dataclass
class Serving:
    url: str  # where clients connect: the replica itself, or HAProxy in front of them
    replicas: list[Server]
    balancer: Server | None = None

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU time a measurement reports (bench/harness/cpu.py)."""
        groups = {"issuer": [r.proc.pid for r in self.replicas if r.proc is not None]}
        if self.balancer is not None and self.balancer.proc is not None:
            groups["HAProxy"] = [self.balancer.proc.pid]
        return groups


@contextmanager
def serving(cfg: Config, stack: Stack, replicas: int, tag: str) -> Iterator[Serving]:
    """``replicas`` issuers of ``stack`` on ports of their own (ISSUER_URL stays the stack's
    public one) and the URL a client uses: the replica itself when there is one, else HAProxy
    in front of them on the stack's issuer port."""
    ports = [replica_port(cfg, i) for i in range(replicas)]
    with ExitStack() as started:
        servers = [
            started.enter_context(
                stack.issuer(port=port, name=f"issuer-{tag}-r{i + 1}", args=REPLICA_ARGS)
            )
            for i, port in enumerate(ports)
        ]
        if replicas == 1:
            yield Serving(servers[0].url, servers)
        else:
            lb = started.enter_context(balancer(cfg, stack.issuer_port, ports, f"haproxy-{tag}"))
            yield Serving(lb.url, servers, lb.server)
