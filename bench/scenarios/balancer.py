"""Scenario 10: the load balancer's cost. POST /token (client_credentials) through HAProxy in
front of one issuer replica against the same requests straight to that replica, alternated."""

from __future__ import annotations

from dataclasses import asdict

from bench.harness import cpu
from bench.harness.balancer import REPLICA_ARGS, balancer, haproxy_missing, replica_port
from bench.harness.config import Context, Row, Scenario
from bench.harness.ratio import Target, measure_ratio, ratio_row, rps
from bench.harness.stack import Stack
from bench.harness.wrk import WrkResult, finish_wrk, start_wrk

BALANCER_TARGET = Target(">=", 0.9)
NAME = "issuer POST /token, client_credentials, through HAProxy vs straight to the replica"

METHOD = (
    "Load balancer: `POST /token` client_credentials (bench/wrk/token.lua) through HAProxy"
    " (Debian's haproxy with docker/haproxy/haproxy.cfg as shipped, both of its server lines on"
    " the one replica so that every request reaches the same process; the replica trusts"
    " X-Forwarded-* as compose runs it) against the same load straight to that replica,"
    " alternated B A B ... A B (B: straight). HAProxy runs on the server CPUs beside the"
    " replica, so its CPU time counts against the ratio (on a machine of its own it would cost"
    " latency, not throughput). The Notes give each process's CPU time per request (user +"
    " system, /proc) during the median run through HAProxy and the straight runs around it,"
    " and the ratio those alone predict, straight / (issuer + HAProxy): a figure other load on"
    " the machine moves far less than throughput. Without haproxy the row says `not measured`"
    " and why."
)


def cpu_note(issuer_straight_us: float, issuer_through_us: float, haproxy_us: float) -> str:
    """The CPU-per-request part of the row's note, with the ratio it predicts when the issuer
    and HAProxy share the server core."""
    predicted = issuer_straight_us / (issuer_through_us + haproxy_us)
    return (
        f"CPU per request: straight, issuer {issuer_straight_us:.0f} us; through HAProxy,"
        f" issuer {issuer_through_us:.0f} us + HAProxy {haproxy_us:.0f} us (predicted ratio"
        f" {predicted:.2f}); "
    )


def run(ctx: Context) -> None:
    """POST /token client_credentials through HAProxy vs straight to the replica: >= 0.9."""
    cfg = ctx.cfg
    why = haproxy_missing()
    if why:
        ctx.add(
            Row("10", NAME, f"not measured: {why}", target=f"{BALANCER_TARGET.text} (not checked)")
        )
        return
    stack = Stack(ctx, "s10")
    client = stack.create_client("bench-s10")
    env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}
    port = replica_port(cfg, 0)
    with (
        stack.issuer(port=port, name="issuer-s10-r1", args=REPLICA_ARGS) as replica,
        balancer(cfg, stack.issuer_port, [port], "haproxy-s10") as lb,
    ):
        stack.get_token(client, replica.url)  # also checks alg RS256
        stack.get_token(client, lb.url)
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

        def through(i: int) -> WrkResult:
            res, used, split = measured(f"{lb.url}/token", "POST /token through HAProxy", i == 0)
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
    ctx.raw["balancer_cpu_us_per_request"] = {"through": per_request, "straight": straight_us}
    note = cpu_note(around, through_us["issuer"], through_us["HAProxy"])
    note += f"through HAProxy, {splits[i]}; "
    ctx.add(ratio_row("10", NAME, m, BALANCER_TARGET, note=note))


SCENARIO = Scenario("10", run, METHOD)
