"""Scenario 1: the token endpoint. POST /token (client_credentials, 1 worker) against raw RSA
signing measured around it, the same for node-oidc-provider, Keyhouse / peer, and JWKS GETs."""

from __future__ import annotations

from dataclasses import asdict

from bench.harness import peer
from bench.harness.config import BenchError, Context, Row, Scenario
from bench.harness.ratio import Measured, Target, measure_ratio, ratio_row
from bench.harness.stack import Stack, expect_ok
from bench.harness.wrk import WrkResult, run_wrk
from bench.scenarios.ceilings import sign_rate

TOKEN_TARGET = Target(">=", 0.75)
VS_PEER_TARGET = Target(">", 1.0)

METHOD = (
    "Token endpoint: `POST /token` with `grant_type=client_credentials&audience=photos&"
    "scope=photos:read` and client_secret_basic (bench/wrk/token.lua). The peer is"
    " node-oidc-provider (bench/peer/server.js) issuing an RS256 JWT access token for an"
    " RFC 8707 resource indicator, one process, same client auth and scope."
)


def vs_peer_row(kh: Measured[WrkResult], pr: Measured[WrkResult]) -> Row:
    """Keyhouse / peer, computed: each side's ratio to the raw signing measured around it,
    divided, so machine drift between the two measurements cancels out; the raw tokens/s ratio
    of the two median runs beside it."""
    computed = kh.ratio / pr.ratio
    raw = kh.median_run.rps / pr.median_run.rps
    return Row(
        "1",
        "tokens/s Keyhouse / node-oidc-provider, computed: (Keyhouse / raw sign)"
        f" / (peer / raw sign) = {kh.ratio:.2f} / {pr.ratio:.2f}",
        f"raw ratio {raw:.2f} ({kh.median_run.rps:,.0f} / {pr.median_run.rps:,.0f} tok/s)",
        "",
        round(computed, 3),
        VS_PEER_TARGET.text,
        VS_PEER_TARGET.met(computed),
        note=f"computed from the two rows above, not measured; raw tok/s ratio {raw:.2f}",
    )


def run(ctx: Context) -> None:
    """POST /token (client_credentials, 1 worker) vs raw signs/s and vs node-oidc-provider;
    JWKS GET req/s vs the peer's."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s1")
    client = stack.create_client("bench-s1")
    with stack.issuer(workers=1) as iss:
        stack.get_token(client)  # also checks alg RS256
        env = {"BENCH_AUTHORIZATION": client.authorization, "BENCH_BODY": stack.token_body()}
        url = f"{stack.issuer_url}/token"

        def keyhouse(i: int) -> WrkResult:
            return run_wrk(
                ctx,
                "keyhouse POST /token",
                url,
                "token.lua",
                env,
                warmup=i == 0,
                profile=iss if i == 0 else None,
            )

        kh = measure_ratio(cfg.rounds, keyhouse, lambda _i: sign_rate(ctx), lambda r: r.rps)
        jwks_url = f"{stack.issuer_url}/.well-known/jwks.json"
        expect_ok(jwks_url)
        kh_jwks = run_wrk(ctx, "keyhouse GET jwks", jwks_url, "bearer.lua")
    ctx.memo["issuer_token_w1"] = kh.median_run
    ctx.raw["token_vs_sign"] = asdict(kh.alt)
    ctx.add(
        ratio_row(
            "1",
            "issuer POST /token, client_credentials, 1 worker, vs raw RSA signs",
            kh,
            TOKEN_TARGET,
            unit="signs/s",
        )
    )

    try:
        server = peer.server(cfg)
    except BenchError as exc:
        ctx.add(Row("1", "peer node-oidc-provider", "not measured", note=str(exc)))
        return
    with server:
        peer.check_token(server.url)
        penv = peer.token_env()

        def peer_token(i: int) -> WrkResult:
            return run_wrk(
                ctx, "peer POST /token", f"{server.url}/token", "token.lua", penv, warmup=i == 0
            )

        pr = measure_ratio(cfg.rounds, peer_token, lambda _i: sign_rate(ctx), lambda r: r.rps)
        expect_ok(f"{server.url}/jwks")
        pr_jwks = run_wrk(ctx, "peer GET jwks", f"{server.url}/jwks", "bearer.lua")
    ctx.raw["peer_token_vs_sign"] = asdict(pr.alt)
    ctx.add(
        ratio_row(
            "1",
            "peer node-oidc-provider POST /token (1 process) vs raw RSA signs",
            pr,
            None,
            target_text="(issue quotes ~0.65)",
            unit="signs/s",
        )
    )
    ctx.add(vs_peer_row(kh, pr))
    ctx.add(
        Row(
            "1",
            "JWKS GET req/s Keyhouse / node-oidc-provider",
            kh_jwks.short(),
            pr_jwks.short(),
            round(kh_jwks.rps / pr_jwks.rps, 3),
            "(report)",
            None,
        )
    )


SCENARIO = Scenario("1", run, METHOD)
