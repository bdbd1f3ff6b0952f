"""Scenario 6: the resource service's memory after N distinct valid tokens (1,000,000 in a full
run), bench-minted with its own key (bench/mass_tokens.py): bounded by the verified-token cache."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from bench import mass_tokens as mt
from bench.harness.config import AUDIENCE, SCOPE, BenchError, Context, Row, Scenario, cpu_set
from bench.harness.stack import Stack, expect_ok

MEMORY_CACHE_SIZE = 10_000  # RESOURCE_TOKEN_CACHE_SIZE for this scenario (the app's default)
MIB = 1024 * 1024
# A cache entry holds the token string (its key) and the verified claims as Python objects (an
# AccessToken and its claims dict). Measured with tracemalloc on 722-byte tokens shaped like the
# bench's (mass_tokens.mint_tokens, verified by shared.tokens.TokenVerifier): 2.5 KiB an entry,
# 3.5 times the token's length. The bound allows this many bytes per byte of token.
ENTRY_BYTES_PER_TOKEN_BYTE = 4
# Growth that has nothing to do with the cache: the first requests' allocations, 16 connections'
# buffers, the allocator's slack.
BASE_GROWTH = 16 * MIB

METHOD = (
    "Memory: the bench mints N distinct valid tokens with its own RSA-2048 key (published"
    " as a JWKS by a local server the resource service is pointed at), sends each once over"
    " 16 keep-alive connections (bench/mass_tokens.py), and samples the service's RSS"
    " (/proc, workers included) ten times along the way. The growth allowed is the cache size"
    f" x {ENTRY_BYTES_PER_TOKEN_BYTE} x the mean length of those tokens (an entry's measured"
    " cost: the token string and its verified claims) + 16 MiB; an RSS that cannot be read"
    " fails the scenario."
)


def memory_bound(cache_size: int, token_bytes: float) -> int:
    """Bytes of RSS growth a full cache of ``token_bytes``-long tokens may account for."""
    return int(cache_size * ENTRY_BYTES_PER_TOKEN_BYTE * token_bytes) + BASE_GROWTH


def memory_verdict(
    samples: Sequence[tuple[int, int]], n: int, cache_size: int, token_bytes: float
) -> tuple[int, int, bool | None]:
    """(growth bound, second-half bound, passed) for RSS ``samples`` (tokens sent, bytes).

    None when too few tokens were sent to fill the cache several times over (a quick run); a
    sample of 0 bytes is no measurement: BenchError."""
    if not samples or any(rss <= 0 for _done, rss in samples):
        raise BenchError(f"the resource service's RSS was not measured: {list(samples)}")
    bound = memory_bound(cache_size, token_bytes)
    half = min(samples, key=lambda s: abs(s[0] - n // 2))[1]
    flat = max(16 * MIB, int(0.1 * half))
    if n < 4 * cache_size:
        return bound, flat, None
    start, end = samples[0][1], samples[-1][1]
    return bound, flat, end - start <= bound and end - half <= flat


def run(ctx: Context) -> None:
    """Resource service memory after 1,000,000 distinct valid tokens: bounded by the
    verified-token cache size setting (RSS stops growing once the cache is full)."""
    cfg = ctx.cfg
    n = cfg.memory_tokens
    key = mt.BenchIssuerKey()
    jwks_port = cfg.base_port + 60
    bench_iss = f"http://127.0.0.1:{jwks_port}"
    t0 = time.perf_counter()

    def progress(k: int) -> None:
        if k % 100_000 == 0:
            print(f"    minted {k:,}/{n:,}", flush=True)

    tokens = mt.mint_tokens(key, n, bench_iss, AUDIENCE, SCOPE, progress=progress)
    mint_s = time.perf_counter() - t0
    token_bytes = sum(map(len, tokens)) / max(1, len(tokens))
    print(f"    minted {n:,} tokens of {token_bytes:.0f} bytes in {mint_s:.0f} s", flush=True)
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

            def checkpoint(done: int) -> None:
                try:
                    samples.append((done, mt.rss_bytes(pid)))
                except (OSError, ValueError) as exc:
                    raise BenchError(
                        f"the resource service's RSS could not be read: {exc}"
                    ) from exc

            expect_ok(f"{rs.url}/whoami", tokens[0].decode())
            checkpoint(0)
            before = os.sched_getaffinity(0)
            if cfg.pinned:
                os.sched_setaffinity(0, cpu_set(cfg.load_cpus))
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
            checkpoint(n)
    del tokens
    ok = statuses.get(200, 0)
    ctx.raw["memory"] = {
        "tokens": n,
        "token_bytes": round(token_bytes, 1),
        "cache_size": MEMORY_CACHE_SIZE,
        "statuses": statuses,
        "mint_seconds": round(mint_s, 1),
        "send_seconds": round(send_s, 1),
        "rss_samples": samples,
    }
    if ok < n * 0.99:
        raise BenchError(f"only {ok:,} of {n:,} distinct tokens were accepted: {statuses}")
    bound, flat, passed = memory_verdict(samples, n, MEMORY_CACHE_SIZE, token_bytes)
    start_rss, end_rss = samples[0][1], samples[-1][1]
    half = min(samples, key=lambda s: abs(s[0] - n // 2))
    print(
        "    RSS MiB at "
        + ", ".join(f"{d:,}: {r / MIB:.0f}" for d, r in samples)
        + f" ({n / send_s:,.0f} req/s)",
        flush=True,
    )
    entries = MEMORY_CACHE_SIZE * ENTRY_BYTES_PER_TOKEN_BYTE * token_bytes
    ctx.add(
        Row(
            "6",
            f"resource RSS after {n:,} distinct valid tokens (cache size {MEMORY_CACHE_SIZE:,})",
            f"{end_rss / MIB:.0f} MiB (start {start_rss / MIB:.0f}, at {half[0]:,}:"
            f" {half[1] / MIB:.0f}; growth {(end_rss - start_rss) / MIB:+.0f},"
            f" 2nd half {(end_rss - half[1]) / MIB:+.1f})",
            f"size x {ENTRY_BYTES_PER_TOKEN_BYTE} x {token_bytes:.0f} B tokens ="
            f" {entries / MIB:.0f} MiB",
            None,
            f"growth <= {bound / MIB:.0f} MiB, 2nd half <= {flat / MIB:.0f} MiB"
            if passed is not None
            else f"(needs >= {4 * MEMORY_CACHE_SIZE:,} tokens)",
            passed,
        )
    )


SCENARIO = Scenario("6", run, METHOD)
