"""Scenario 10: the load balancer's cost. POST /token (client_credentials) through HAProxy in
front of one issuer replica against the same requests straight to that replica, alternated."""

from __future__ import annotations

from bench.harness import cpu
from bench.harness.balancer import balancer, haproxy_missing, replica_port
from bench.harness.config import Context, Row, Scenario
from bench.harness.ratio import Target, measure_ratio, ratio_row, rps
from bench.harness.stack import Stack
from bench.harness.wrk import WrkResult, finish_wrk, run_wrk, start_wrk

BALANCER_TARGET = Target(">=", 0.9)
NAME = "issuer POST /token, client_credentials, through HAProxy vs straight to the replica"

METHOD = (
    "Load balancer: `POST /token` client_credentials (bench/wrk/token.lua) through HAProxy"
    " (Debian's haproxy with docker/haproxy/haproxy.cfg, access log off, both of its server"
    " lines on the one replica so that every request reaches the same process) against the"
    " same load straight to that replica, alternated B A B ... A B (B: straight). HAProxy runs"
    " on the server CPUs beside the replica, so its CPU time counts against the ratio (on a"
    " machine of its own it would cost latency, not throughput); the Notes give the two"
    " processes' shares of it during the median run. Without haproxy the row says `not"
    " measured` and why."
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
        stack.issuer(port=port, name="issuer-s10-r1") as replica,
        balancer(cfg, stack.issuer_port, [port], "haproxy-s10") as lb,
    ):
        stack.get_token(client, replica.url)  # also checks alg RS256
        stack.get_token(client, lb.url)
        assert replica.proc is not None
        assert lb.server.proc is not None
        groups = {"issuer": [replica.proc.pid], "HAProxy": [lb.server.proc.pid]}
        splits: list[str] = []  # where the server CPUs went, each run through HAProxy

        def through(i: int) -> WrkResult:
            url = f"{lb.url}/token"
            what = "POST /token through HAProxy"
            if i == 0 and cfg.warmup > 0:  # apart, so that the CPU split is the measured run's
                warm = start_wrk(cfg, url, "token.lua", env, seconds=cfg.warmup)
                finish_wrk(warm, cfg.warmup, what + " warm-up")
            before = cpu.snapshot(groups)
            res = run_wrk(ctx, what, url, "token.lua", env, warmup=False)
            splits.append(cpu.split_text(before, cpu.snapshot(groups)))
            return res

        def straight(i: int) -> float:
            url = f"{replica.url}/token"
            what = "POST /token straight to the replica"
            return run_wrk(ctx, what, url, "token.lua", env, warmup=i == 0).rps

        m = measure_ratio(cfg.rounds, through, straight, rps)
    note = f"through HAProxy, {splits[m.alt.median_index]}; "
    ctx.add(ratio_row("10", NAME, m, BALANCER_TARGET, note=note))


SCENARIO = Scenario("10", run, METHOD)
