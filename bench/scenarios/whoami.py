"""Scenario 2: the resource service's GET /whoami against its own unauthenticated /healthz,
without and with the verified-token cache."""

from __future__ import annotations

from bench.harness.config import Context, Scenario
from bench.harness.ratio import Target, measure_ratio, ratio_row, rps
from bench.harness.stack import Stack, expect_ok
from bench.harness.wrk import WrkResult, run_wrk

# The verified-token cache's size knob (RESOURCE_TOKEN_CACHE_SIZE; 0 disables it).
TOKEN_CACHE_OFF_ENV: dict[str, str] = {"RESOURCE_TOKEN_CACHE_SIZE": "0"}
TOKEN_CACHE_ON_ENV: dict[str, str] = {"RESOURCE_TOKEN_CACHE_SIZE": "10000"}
TARGETS = {"no cache": Target(">=", 0.5), "token cache": Target(">=", 0.85)}

METHOD = (
    "Resource service: `GET /whoami` with one valid bearer token vs `GET /healthz`"
    " (bench/wrk/bearer.lua); the baseline is bench/baseline_pyjwt_app.py (PyJWT"
    " `PyJWKClient`)."
)


def _whoami_vs_healthz(ctx: Context, label: str, cache_env: dict[str, str]) -> None:
    stack = Stack(ctx, f"s2-{label}")
    client = stack.create_client(f"bench-s2-{label}")
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        with stack.resource(workers=1, env=cache_env) as rs:
            expect_ok(f"{rs.url}/whoami", token)  # also fills the JWKS cache

            def whoami(i: int) -> WrkResult:
                return run_wrk(
                    ctx,
                    f"resource /whoami ({label})",
                    f"{rs.url}/whoami",
                    "bearer.lua",
                    {"BENCH_TOKEN": token},
                    warmup=i == 0,
                    profile=rs if i == 0 else None,
                )

            def healthz(i: int) -> float:
                return run_wrk(
                    ctx,
                    f"resource /healthz ({label})",
                    f"{rs.url}/healthz",
                    "bearer.lua",
                    warmup=i == 0,
                ).rps

            m = measure_ratio(ctx.cfg.rounds, whoami, healthz, rps)
    ctx.memo[f"whoami_{label}"] = m.median_run
    ctx.add(ratio_row("2", f"resource GET /whoami vs its /healthz, {label}", m, TARGETS[label]))


def run(ctx: Context) -> None:
    """/whoami with a valid token vs the unauthenticated /healthz: >= 0.5 without the
    verified-token cache, >= 0.85 with it."""
    _whoami_vs_healthz(ctx, "no cache", TOKEN_CACHE_OFF_ENV)
    _whoami_vs_healthz(ctx, "token cache", TOKEN_CACHE_ON_ENV)


SCENARIO = Scenario("2", run, METHOD)
