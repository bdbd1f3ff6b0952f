"""Scenario 3: Keyhouse's resource service against the resource server people write by hand,
a Starlette app verifying with PyJWT's PyJWKClient (bench/baseline_pyjwt_app.py)."""

from __future__ import annotations

import sys

from bench.harness.config import AUDIENCE, BENCH, Context, Scenario
from bench.harness.ratio import Target, measure_ratio, ratio_row
from bench.harness.stack import Stack, bench_server, expect_ok
from bench.harness.wrk import WrkResult, run_wrk
from bench.scenarios.whoami import TOKEN_CACHE_OFF_ENV, TOKEN_CACHE_ON_ENV

CACHE_OFF_TARGET = Target(">=", 1.5)


def run(ctx: Context) -> None:
    """/whoami of Keyhouse's resource service vs a Starlette app verifying with PyJWT's
    PyJWKClient (bench/baseline_pyjwt_app.py): >= 1.5x."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s3")
    client = stack.create_client("bench-s3")
    baseline_port = cfg.base_port + 9
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        baseline = bench_server(
            cfg,
            "baseline-pyjwt",
            [sys.executable, str(BENCH / "baseline_pyjwt_app.py"), "--port", str(baseline_port)],
            port=baseline_port,
            env={"BASELINE_ISSUER": stack.issuer_url, "BASELINE_AUDIENCE": AUDIENCE},
        )
        with baseline:
            base_url = f"{baseline.url}/whoami"
            expect_ok(base_url, token)

            def base(i: int) -> float:
                return run_wrk(
                    ctx,
                    "baseline PyJWKClient /whoami",
                    base_url,
                    "bearer.lua",
                    {"BENCH_TOKEN": token},
                    warmup=i == 0,
                ).rps

            # Both servers are up at once (pinned to the same core; the idle one sleeps) so the
            # two sides can alternate: once verifying every request, once as deployed.
            for label, env, target in (
                ("cache off", TOKEN_CACHE_OFF_ENV, CACHE_OFF_TARGET),
                ("as deployed: verified-token cache on", TOKEN_CACHE_ON_ENV, None),
            ):
                with stack.resource(workers=1, env=env) as rs:
                    url = f"{rs.url}/whoami"
                    expect_ok(url, token)

                    def keyhouse(i: int, url: str = url) -> WrkResult:
                        return run_wrk(
                            ctx,
                            "resource /whoami (s3)",
                            url,
                            "bearer.lua",
                            {"BENCH_TOKEN": token},
                            warmup=i == 0,
                        )

                    m = measure_ratio(cfg.rounds, keyhouse, base, lambda r: r.rps)
                name = f"resource /whoami ({label}) vs PyJWT PyJWKClient Starlette baseline"
                ctx.add(ratio_row("3", name, m, target))


SCENARIO = Scenario("3", run)
