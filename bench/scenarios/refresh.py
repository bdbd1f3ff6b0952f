"""Scenario 9: the database path. POST /token with grant_type=refresh_token, every request
presenting a refresh token never presented before (bench/wrk/refresh.lua,
bench/harness/chains.py), on SQLite and on PostgreSQL, one issuer replica and two behind HAProxy,
each against raw RSA signing measured around it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from bench.harness import cpu, database, profiler
from bench.harness.balancer import haproxy_missing, serving
from bench.harness.chains import (
    ChainStats,
    SeedPool,
    chain_problems,
    ledger_problems,
    parse_chain,
    seeds_per_run,
)
from bench.harness.config import AUDIENCE, SCOPE, BenchError, Context, Scenario
from bench.harness.processes import Server
from bench.harness.ratio import Target, measure_ratio, not_measured_row, ratio_row
from bench.harness.stack import Client, Stack, claims
from bench.harness.wrk import WrkResult, checked, start_wrk, wrk_output, wrk_threads
from bench.scenarios.ceilings import sign_rate

# Refresh on PostgreSQL with one replica: at least half of raw signing (issue 15).
REFRESH_TARGET = Target(">=", 0.5)
DATABASES = ("sqlite", "postgresql")
REPLICAS = (1, 2)

METHOD = (
    "Refresh grant: `POST /token` with `grant_type=refresh_token` and client_secret_basic"
    " (bench/wrk/refresh.lua). A refresh token is single use, so each wrk thread presents the"
    " successor the previous answer carried (a chain, as a client renewing its session does)"
    " and starts a chain from a seed, a fresh refresh token of a family of its own, for each"
    " connection's first request and after an answer without a successor. The seeds (2 x the"
    " connections + 8 per run) are minted before the runs with the issuer's own"
    " `RefreshTokenStore.issue`, what a password login stores, because logins run a few a second"
    " by design; one real password login and one refresh through the same URL check the path"
    " first. A run is refused unless its counters add up (no request without a fresh token) and"
    " the database agrees: no refresh token revoked (a token presented twice revokes its"
    " family), at least as many redeemed as successors answered (a request in flight when wrk"
    " stops may be redeemed unanswered) and at most as many as presented."
    " Four set-ups, each alternated with raw signing: SQLite (a file) and PostgreSQL (a"
    " throwaway server from Debian's binaries, tests/support/postgres.py, fsync off), with one"
    " replica reached directly and with two replicas behind HAProxy (docker/haproxy/haproxy.cfg"
    " as shipped, the replicas trusting its X-Forwarded-* as in compose). The replicas,"
    " HAProxy and PostgreSQL all run on the server CPUs: on a"
    " two-core machine the two replicas share one core, so that row shows what the balancer"
    " and a second process cost, not what a second machine adds. The Notes say where the server"
    " CPUs went during the median run (issuer, HAProxy, PostgreSQL: CPU seconds from /proc);"
    " `--profile` samples the first replica. Rows say `not measured` with the reason when"
    " PostgreSQL's binaries or haproxy are missing. The `authorization_code` exchange joins"
    " this scenario once the issuer has it."
)


def label(kind: str, replicas: int) -> str:
    db = "SQLite" if kind == "sqlite" else "PostgreSQL"
    where = "1 replica" if replicas == 1 else f"{replicas} replicas behind HAProxy"
    return f"issuer POST /token, refresh_token, {db}, {where}, vs raw RSA signs"


def target(kind: str, replicas: int) -> Target | None:
    return REFRESH_TARGET if (kind, replicas) == ("postgresql", 1) else None


def not_measured(ctx: Context, kind: str, replicas: int, why: str) -> None:
    """A row that says what was not measured and why: neither a pass nor a miss."""
    ctx.add(not_measured_row("9", label(kind, replicas), why, target(kind, replicas)))


@contextmanager
def database_server(ctx: Context, kind: str) -> Iterator[database.Postgres | None]:
    """The issuer's database server: None for a SQLite file of the stack's own."""
    if kind == "sqlite":
        yield None
        return
    with database.postgres(ctx.cfg) as pg:
        yield pg


def password_form(password: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": "bench-user",
        "password": password,
        "audience": AUDIENCE,
        "scope": SCOPE,
    }


def check_path(stack: Stack, client: Client, password: str, url: str) -> str:
    """One real password login and one refresh of its token through ``url`` (the successor must
    come back); the user's id, for the seeds."""
    login = stack.post_token(client, password_form(password), url)
    if not login.get("refresh_token"):
        raise BenchError("the password grant answered no refresh_token (client grants?)")
    sub = str(claims(str(login["access_token"])).get("sub", ""))
    if not sub.startswith("user:"):
        raise BenchError(f"a password login's token has sub {sub!r}, expected user:<id>")
    renewed = stack.post_token(
        client, {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}, url
    )
    if not renewed.get("refresh_token") or renewed["refresh_token"] == login["refresh_token"]:
        raise BenchError("the refresh grant answered no new refresh_token")
    return sub.removeprefix("user:")


def refresh_run(
    ctx: Context,
    client: Client,
    url: str,
    pool: SeedPool,
    what: str,
    seconds: int,
    profile: Server | None = None,
) -> tuple[WrkResult, ChainStats]:
    """One wrk run of refresh.lua with seeds of its own; refused unless every request presented
    a refresh token never presented before. With --profile and ``profile``, py-spy samples that
    server meanwhile."""
    cfg = ctx.cfg
    seeds = pool.take(seeds_per_run(cfg.connections))
    path = cfg.run_dir / f"seeds-{secrets.token_hex(6)}.txt"
    path.write_text("\n".join(seeds) + "\n")
    try:
        env = {
            "BENCH_AUTHORIZATION": client.authorization,
            "BENCH_SEEDS_FILE": str(path),
            "BENCH_THREADS": str(wrk_threads(cfg, cfg.connections)),
        }
        prof = profiler.start(cfg, profile, what) if cfg.profile and profile else None
        proc = start_wrk(cfg, f"{url}/token", "refresh.lua", env, seconds=seconds)
        out = wrk_output(proc, seconds, what)
        if prof is not None:
            profiler.finish(ctx, prof)
    finally:
        path.unlink(missing_ok=True)  # live refresh tokens of the bench's database
    res = checked(out, what)
    stats = parse_chain(out)
    problems = chain_problems(stats, len(seeds), cfg.connections)
    if problems:
        raise BenchError(f"wrk ({what}): " + "; ".join(problems))
    return res, stats


def measure(
    ctx: Context,
    stack: Stack,
    client: Client,
    password: str,
    pg: database.Postgres | None,
    replicas: int,
) -> None:
    cfg = ctx.cfg
    kind = "sqlite" if pg is None else "postgresql"
    what = f"refresh_token {kind} x{replicas}"
    with serving(cfg, stack, replicas, f"{kind}-x{replicas}") as served:
        url = served.url
        groups = served.cpu_groups()
        if pg is not None:
            groups["PostgreSQL"] = [pg.pid]
        splits: list[str] = []  # where the server CPUs went, each A run (its best repeat)
        user_id = check_path(stack, client, password, url)
        runs = max(1, cfg.rounds) * max(1, cfg.repeat) + (1 if cfg.warmup > 0 else 0)
        pool = SeedPool(
            database.mint_refresh_tokens(
                stack.database_url,
                client_id=client.client_id,
                user_id=user_id,
                audience=AUDIENCE,
                scope=SCOPE,
                count=runs * seeds_per_run(cfg.connections),
            )
        )
        before = database.ledger(stack.database_url, client.client_id)
        chains: list[ChainStats] = []

        def refresh(i: int) -> WrkResult:
            if i == 0 and cfg.warmup > 0:
                chains.append(refresh_run(ctx, client, url, pool, what + " warm-up", cfg.warmup)[1])
            tries: list[tuple[WrkResult, str]] = []  # best of --repeat
            for r in range(max(1, cfg.repeat)):
                # --profile: the first replica during the first measured run
                profile = served.replicas[0] if i == 0 and r == 0 else None
                before_cpu = cpu.snapshot(groups)
                res, stats = refresh_run(ctx, client, url, pool, what, cfg.duration, profile)
                tries.append((res, cpu.split_text(before_cpu, cpu.snapshot(groups))))
                chains.append(stats)
            best, split = max(tries, key=lambda t: t[0].rps)
            splits.append(split)
            ctx.raw.setdefault("wrk", {})[what] = asdict(best)
            print(f"    wrk {what}: {best.short()}", flush=True)
            return best

        m = measure_ratio(cfg.rounds, refresh, lambda _i: sign_rate(ctx), lambda r: r.rps)
        delta = database.ledger(stack.database_url, client.client_id) - before
    problems = ledger_problems(delta, chains)
    if problems:
        raise BenchError(f"{what}: " + "; ".join(problems))
    ctx.raw.setdefault("refresh_chains", {})[what] = [asdict(c) for c in chains]
    seeded = sum(c.from_seeds for c in chains)
    renewed = sum(c.successors for c in chains)
    note = (
        f"{splits[m.alt.median_index]}; "
        f"each request presented a refresh token never presented before: {seeded} seeds and"
        f" {renewed} successors in {len(chains)} wrk runs; the database redeemed"
        f" {delta.redeemed} and revoked none; "
    )
    ctx.add(
        ratio_row(
            "9",
            label(kind, replicas),
            m,
            target(kind, replicas),
            unit="signs/s",
            note=note,
        )
    )


def run(ctx: Context) -> None:
    """POST /token refresh_token (each token presented once) on SQLite and PostgreSQL, one
    replica and two behind HAProxy, vs raw signs/s (PostgreSQL, one replica: >= 0.5)."""
    no_postgres = database.postgres_missing()
    no_haproxy = haproxy_missing()
    for kind in DATABASES:
        if kind == "postgresql" and no_postgres:
            for replicas in REPLICAS:
                not_measured(ctx, kind, replicas, no_postgres)
            continue
        with database_server(ctx, kind) as pg:
            stack = Stack(ctx, f"s9-{kind}", database_url=pg.url if pg else None)
            client = stack.create_client("bench-s9", grants=("password", "refresh_token"))
            password = secrets.token_urlsafe(18)
            stack.create_user("bench-user", password)
            for replicas in REPLICAS:
                if replicas > 1 and no_haproxy:
                    not_measured(ctx, kind, replicas, no_haproxy)
                    continue
                measure(ctx, stack, client, password, pg, replicas)


SCENARIO = Scenario("9", run, METHOD)
