"""Scenario 11: DPoP's cost at a resource service (issue 17). GET /whoami with a DPoP-bound token
and a fresh proof on every request against the same with a bearer token, alternated."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict

from bench.harness import cpu, profiler
from bench.harness.config import BenchError, Context, Scenario
from bench.harness.dpop_proofs import (
    MAX_RUN_SECONDS,
    ProofKey,
    check_proof_run,
    make_proofs,
    parse_proof_stats,
    proofs_needed,
    write_proofs,
)
from bench.harness.processes import Server
from bench.harness.ratio import measure_ratio, ratio_row, rps
from bench.harness.stack import Client, Stack, claims, expect_ok, http
from bench.harness.wrk import (
    WrkResult,
    finish_wrk,
    parse_wrk,
    start_wrk,
    wrk_output,
    wrk_threads,
)

NAME = "resource GET /whoami, DPoP-bound token + fresh proof vs bearer token"

METHOD = (
    "DPoP: `GET /whoami` at the resource service (default settings: token cache on, replay"
    " cache of 200,000 entries) with a DPoP-bound access token from a real issuer (`POST /token`"
    " client_credentials with an ES256 proof: `token_type` DPoP, `cnf.jkt`) and a fresh ES256"
    " proof on every request (unique `jti`, `htm`, `htu`, `ath`, `iat` when the run's proofs"
    " were made), against `/whoami` with a bearer token, alternated B A B ... A B (B: bearer)."
    " wrk cannot sign, so each run's proofs are made just before it (bench/harness/"
    "dpop_proofs.py, 1.5 times the requests the bearer run before it answered) and sent at most"
    " once each by bench/wrk/dpop.lua; any non-2xx answer (a replayed or stale proof is"
    " refused with 401) or a thread out of proofs fails the scenario rather than count. The"
    " replay cache must hold at least the proofs accepted. The Notes give the resource"
    " service's CPU time per request (user + system, /proc) on each side. No target (issue"
    " 17 sets none)."
)


def bound_token(stack: Stack, client: Client, key: ProofKey) -> str:
    """A client_credentials token bound to ``key`` by the issuer (a proof on ``/token``)."""
    url = f"{stack.issuer_url}/token"
    [proof] = make_proofs(key, method="POST", url=url, count=1, iat=int(time.time()))
    form = {"grant_type": "client_credentials", "audience": "photos", "scope": "photos:read"}
    status, _, body = http(
        "POST", url, form=form, headers={"Authorization": client.authorization, "DPoP": proof}
    )
    if status != 200:
        raise BenchError(f"POST /token with a DPoP proof answered {status}: {body[:300]!r}")
    data = json.loads(body)
    token = str(data["access_token"])
    if data.get("token_type") != "DPoP" or claims(token).get("cnf") != {"jkt": key.jkt}:
        raise BenchError(f"the issuer did not bind the token to the proof key: {data!r}")
    return token


def _check_by_hand(url: str, token: str, key: ProofKey) -> None:
    """One proof is accepted, and the same proof again is refused (the replay cache is on: a
    proof dpop.lua sent twice would fail the run, not count)."""
    [proof] = make_proofs(
        key, method="GET", url=url, count=1, iat=int(time.time()), access_token=token
    )
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    status, _, body = http("GET", url, headers=headers)
    if status != 200:
        raise BenchError(f"GET {url} with a DPoP proof answered {status}: {body[:300]!r}")
    status, _, body = http("GET", url, headers=headers)
    if status != 401 or b"used before" not in body:
        raise BenchError(f"a replayed proof was answered {status}: {body[:300]!r}")


_ENTRIES = re.compile(r"^keyhouse_dpop_replay_cache_entries (\S+)$", re.MULTILINE)


def replay_entries(base_url: str) -> int:
    """The resource service's replay-cache size (its /metrics)."""
    status, _, body = http("GET", f"{base_url}/metrics")
    m = _ENTRIES.search(body.decode(errors="replace")) if status == 200 else None
    if m is None:
        raise BenchError(f"{base_url}/metrics shows no keyhouse_dpop_replay_cache_entries")
    return int(float(m.group(1)))


class DPoPLoad:
    """wrk runs of dpop.lua, each with proofs of its own made just before it."""

    def __init__(self, ctx: Context, rs: Server, token: str, key: ProofKey) -> None:
        self.ctx, self.rs, self.token, self.key = ctx, rs, token, key
        self.url = f"{rs.url}/whoami"
        self.most_entries = 0

    def run(self, what: str, seconds: int, expected_rps: float, *, measured: bool) -> WrkResult:
        cfg = self.ctx.cfg
        path = cfg.run_dir / f"dpop-proofs-{int(time.time() * 1000)}.txt"
        iat = int(time.time())
        made = write_proofs(
            path,
            make_proofs(
                self.key,
                method="GET",
                url=self.url,
                count=proofs_needed(expected_rps, seconds),
                iat=iat,
                access_token=self.token,
            ),
        )
        if time.time() - iat + seconds > MAX_RUN_SECONDS:
            raise BenchError(
                f"{what}: making {made:,} proofs took {time.time() - iat:.0f} s; with the run"
                " they would outlive the service's iat window (is the machine busy?)"
            )
        env = {
            "BENCH_TOKEN": self.token,
            "BENCH_PROOFS_FILE": str(path),
            "BENCH_THREADS": str(wrk_threads(cfg, cfg.connections)),
        }
        prof = profiler.start(cfg, self.rs, what) if measured and cfg.profile else None
        proc = start_wrk(cfg, self.url, "dpop.lua", env, seconds=seconds)
        out = wrk_output(proc, seconds, what)
        path.unlink()
        res = parse_wrk(out)
        stats = parse_proof_stats(out)
        check_proof_run(
            what,
            requests=res.requests,
            non_2xx=res.non_2xx,
            socket_errors=res.socket_errors,
            stats=stats,
            made=made,
        )
        entries = replay_entries(self.rs.url)
        if entries < res.requests:  # every accepted proof took a slot, kept 65 s
            raise BenchError(
                f"{what}: {res.requests} proofs accepted but the replay cache holds {entries}"
            )
        self.most_entries = max(self.most_entries, entries)
        if measured:
            self.ctx.raw.setdefault("wrk", {})[what] = asdict(res)
            print(f"    wrk {what}: {res.short()} ({stats.sent} proofs of {made})", flush=True)
        if prof is not None:
            profiler.finish(self.ctx, prof)
        return res


def _us_per_request(seconds: float, requests: int) -> float:
    return 1e6 * seconds / requests if requests else 0.0


def run(ctx: Context) -> None:
    """/whoami with a DPoP-bound token and a fresh proof per request vs a bearer token (report)."""
    cfg = ctx.cfg
    if cfg.warmup + cfg.duration > MAX_RUN_SECONDS:
        raise BenchError(
            f"--warmup + --duration must stay within {MAX_RUN_SECONDS} s: a run's proofs are"
            " made before it and the service refuses them a minute after"
        )
    stack = Stack(ctx, "s11")
    client = stack.create_client("bench-s11")
    key = ProofKey()
    with stack.issuer(workers=1):
        bearer = stack.get_token(client)
        bound = bound_token(stack, client, key)
        with stack.resource(workers=1) as rs:
            assert rs.proc is not None
            groups = {"resource": [rs.proc.pid]}
            url = f"{rs.url}/whoami"
            expect_ok(url, bearer)  # also fills the JWKS cache
            _check_by_hand(url, bound, key)
            load = DPoPLoad(ctx, rs, bound, key)
            last_bearer: list[float] = []
            cpu_us: dict[str, list[float]] = {"dpop": [], "bearer": []}

            def dpop(i: int) -> WrkResult:
                what = "resource /whoami (DPoP, fresh proof)"
                if i == 0 and cfg.warmup > 0:
                    load.run(what + " warm-up", cfg.warmup, last_bearer[-1], measured=False)
                before = cpu.tree_cpu_seconds(groups["resource"])
                res = load.run(what, cfg.duration, last_bearer[-1], measured=True)
                used = cpu.tree_cpu_seconds(groups["resource"]) - before
                cpu_us["dpop"].append(_us_per_request(used, res.requests))
                return res

            def bearer_run(i: int) -> float:
                what = "resource /whoami (bearer)"
                env = {"BENCH_TOKEN": bearer}
                if i == 0 and cfg.warmup > 0:
                    warm = start_wrk(cfg, url, "bearer.lua", env, seconds=cfg.warmup)
                    finish_wrk(warm, cfg.warmup, what + " warm-up")
                before = cpu.tree_cpu_seconds(groups["resource"])
                res = finish_wrk(start_wrk(cfg, url, "bearer.lua", env), cfg.duration, what)
                used = cpu.tree_cpu_seconds(groups["resource"]) - before
                ctx.raw.setdefault("wrk", {})[what] = asdict(res)
                print(f"    wrk {what}: {res.short()}", flush=True)
                cpu_us["bearer"].append(_us_per_request(used, res.requests))
                last_bearer.append(res.rps)
                return res.rps

            m = measure_ratio(cfg.rounds, dpop, bearer_run, rps)
    i = m.alt.median_index
    dpop_us = cpu_us["dpop"][i]
    bearer_us = (cpu_us["bearer"][i] + cpu_us["bearer"][i + 1]) / 2
    ctx.raw["dpop"] = {
        "cpu_us_per_request": cpu_us,
        "replay_cache_most_entries": load.most_entries,
        "alternation": asdict(m.alt),
    }
    note = (
        f"resource service CPU per request (user + system): DPoP {dpop_us:.0f} us, bearer"
        f" {bearer_us:.0f} us (the median run and the bearer runs around it; ratio"
        f" {bearer_us / dpop_us:.2f}); every proof sent once and accepted, replay cache at most"
        f" {load.most_entries:,} entries; "
        if dpop_us
        else ""
    )
    ctx.add(ratio_row("11", NAME, m, None, note=note))


SCENARIO = Scenario("11", run, METHOD)
