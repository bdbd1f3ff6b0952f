"""Scenario 10: the load balancer's cost. POST /token (client_credentials) through HAProxy in
front of one issuer replica against the same requests straight to that replica, alternated;
HAProxy on a CPU of its own (the target) and sharing the replica's (reported)."""

from __future__ import annotations

from dataclasses import asdict

from bench.harness import cpu
from bench.harness.balancer import (
    REPLICA_ARGS,
    Balancer,
    balancer,
    haproxy_missing,
    replica_port,
)
from bench.harness.config import Context, Row, Scenario
from bench.harness.processes import Server
from bench.harness.ratio import Target, measure_ratio, not_measured_row, ratio_row, rps
from bench.harness.stack import Stack
from bench.harness.wrk import WrkResult, finish_wrk, start_wrk

BALANCER_TARGET = Target(">=", 0.9)
NAME = "issuer POST /token, client_credentials, through HAProxy {where} vs straight to the replica"
# Where HAProxy runs: the target row gives it CPUs apart from the replica's (the load CPUs,
# beside wrk), as a balancer runs in production (a container or host of its own); the second
# row, reported without a target, has it share the replica's CPU: what it costs on a budget of
# one core for both.
OWN, SHARED = "own", "shared"
WHERE = {OWN: "on a CPU of its own", SHARED: "sharing the replica's CPU"}

METHOD = (
    "Load balancer: `POST /token` client_credentials (bench/wrk/token.lua) through HAProxy"
    " (Debian's haproxy with docker/haproxy/haproxy.cfg as shipped, both of its server lines on"
    " the one replica so that every request reaches the same process; the replica trusts"
    " X-Forwarded-* as compose runs it) against the same load straight to that replica,"
    " alternated B A B ... A B (B: straight). Two placements of HAProxy, one after the other"
    " against the same replica: on a CPU of its own (the load CPUs, beside wrk, which leaves"
    " them mostly idle at this rate; the target row: the balancer's cost to the replica, as a"
    " balancer runs in production, in a container or on a host of its own) and sharing the"
    " replica's server CPU (reported, no target: there its CPU time counts against the ratio,"
    " what a one-core budget for both costs). The Notes give each process's CPU time per"
    " request (user + system, /proc) during the median run through HAProxy and the straight"
    " runs around it, and the ratio those alone predict (straight / issuer through HAProxy on a"
    " CPU of its own; straight / (issuer + HAProxy) on a shared one): a figure other load on the"
    " machine moves far less than throughput. Without haproxy the rows say `not measured` and"
    " why."
)


def name(placement: str) -> str:
    return NAME.format(where=WHERE[placement])


def target(placement: str) -> Target | None:
    return BALANCER_TARGET if placement == OWN else None


def cpu_note(
    placement: str, issuer_straight_us: float, issuer_through_us: float, haproxy_us: float
) -> str:
    """The CPU-per-request part of a row's note, with the ratio it predicts: HAProxy's CPU time
    counts against the replica only when they share the CPU."""
    shares = placement == SHARED
    predicted = issuer_straight_us / (issuer_through_us + (haproxy_us if shares else 0.0))
    where = "on the replica's CPU" if shares else "on the load CPUs"
    return (
        f"CPU per request: straight, issuer {issuer_straight_us:.0f} us; through HAProxy,"
        f" issuer {issuer_through_us:.0f} us + HAProxy {haproxy_us:.0f} us {where}"
        f" (predicted ratio {predicted:.2f}); "
    )


def run(ctx: Context) -> None:
    """POST /token client_credentials through HAProxy vs straight to the replica: >= 0.9 with
    HAProxy on a CPU of its own; reported with HAProxy on the replica's CPU."""
    cfg = ctx.cfg
    why = haproxy_missing()
    if why:
        for placement in (OWN, SHARED):
            ctx.add(not_measured_row("10", name(placement), why, target(placement)))
        return
    stack = Stack(ctx, "s10")
    client = stack.create_client("bench-s10")
    env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}
    port = replica_port(cfg, 0)
    with stack.issuer(port=port, name="issuer-s10-r1", args=REPLICA_ARGS) as replica:
        stack.get_token(client, replica.url)  # also checks alg RS256
        for placement in (OWN, SHARED):
            cpus = cfg.load_cpus if placement == OWN else None  # None: the server CPUs
            with balancer(
                cfg, stack.issuer_port, [port], f"haproxy-s10-{placement}", cpus=cpus
            ) as lb:
                stack.get_token(client, lb.url)
                ctx.add(measure(ctx, placement, replica, lb, env))


def measure(
    ctx: Context, placement: str, replica: Server, lb: Balancer, env: dict[str, str]
) -> Row:
    """One placement's row: through ``lb`` against straight to ``replica``, alternated."""
    cfg = ctx.cfg
    assert replica.proc is not None
    assert lb.server.proc is not None
    groups = {"issuer": [replica.proc.pid], "HAProxy": [lb.server.proc.pid]}
    splits: list[str] = []  # where the server CPUs went, each run through HAProxy
    per_request: list[dict[str, float]] = []  # us of CPU a request, each run through
    straight_us: list[float] = []  # the issuer's, each straight run

    def measured(url: str, what: str, warm: bool) -> tuple[WrkResult, dict[str, float], str]:
        if warm and cfg.warmup > 0:  # apart, so that the CPU figures are the measured run's
            finish_wrk(
                start_wrk(cfg, url, "token.lua", env, seconds=cfg.warmup),
                cfg.warmup,
                what + " warm-up",
            )
        before = cpu.snapshot(groups)
        res = finish_wrk(start_wrk(cfg, url, "token.lua", env), cfg.duration, what)
        after = cpu.snapshot(groups)
        ctx.raw.setdefault("wrk", {})[what] = asdict(res)
        print(f"    wrk {what}: {res.short()}", flush=True)
        used = {k: 1e6 * (after[k] - before[k]) / max(1, res.requests) for k in groups}
        return res, used, cpu.split_text(before, after)

    through_what = f"POST /token through HAProxy {WHERE[placement]}"

    def through(i: int) -> WrkResult:
        res, used, split = measured(f"{lb.url}/token", through_what, i == 0)
        per_request.append(used)
        splits.append(split)
        return res

    def straight(i: int) -> float:
        res, used, _ = measured(
            f"{replica.url}/token", "POST /token straight to the replica", i == 0
        )
        straight_us.append(used["issuer"])
        return res.rps

    m = measure_ratio(cfg.rounds, through, straight, rps)
    i = m.alt.median_index
    through_us = per_request[i]
    around = (straight_us[i] + straight_us[i + 1]) / 2
    ctx.raw.setdefault("balancer_cpu_us_per_request", {})[placement] = {
        "through": per_request,
        "straight": straight_us,
    }
    note = cpu_note(placement, around, through_us["issuer"], through_us["HAProxy"])
    if placement == SHARED:
        note += f"through HAProxy, {splits[i]}; "
    elif cfg.load_cpus == cfg.server_cpus:
        note += "the load CPUs are the server CPUs here: HAProxy shared them after all; "
    else:
        note += f"HAProxy on CPU {cfg.load_cpus} with wrk, the replica on {cfg.server_cpus}; "
    return ratio_row("10", name(placement), m, target(placement), note=note)


SCENARIO = Scenario("10", run, METHOD)
