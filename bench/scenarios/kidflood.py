"""Scenario 4: a flood of tokens with random kids beside the usual valid load: the valid load's
throughput with and without the flood, and the resource service's JWKS fetches meanwhile
(counted by a proxy set as RESOURCE_JWKS_URL)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.harness import profiler
from bench.harness.config import AUDIENCE, SCOPE, BenchError, Context, Row, Scenario
from bench.harness.ratio import Target, measure_ratio
from bench.harness.stack import Stack, expect_ok, http
from bench.harness.wrk import WrkResult, finish_wrk, run_wrk, start_wrk

# The resource service's unknown-kid refetch cooldown (shared/jwks_settings.py, default 30 s):
# "JWKS fetches <= 1 per cooldown" is checked against it.
KID_COOLDOWN_SECONDS: float = 30.0
KID_COOLDOWN_ENV: dict[str, str] = {
    "RESOURCE_JWKS_UNKNOWN_KID_COOLDOWN": f"{KID_COOLDOWN_SECONDS:g}"
}
KID_FLOOD_TOKENS = 10_000
FLOOD_CONNECTIONS = 4
THROUGHPUT_TARGET = Target(">=", 0.8)

METHOD = (
    "Kid flood: 10,000 tokens whose headers carry random kids (bench/wrk/tokens_file.lua"
    " cycles through them, unthrottled, on 4 connections) while the usual 32 connections"
    " send one valid token; the resource service reaches the JWKS through a counting proxy"
    " (RESOURCE_JWKS_URL), which gives the fetch count."
)


class JwksCountingProxy:
    """A tiny HTTP proxy in front of the issuer's JWKS that counts the resource service's fetches
    (set as RESOURCE_JWKS_URL, which skips discovery)."""

    def __init__(self, upstream: str, port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.fetches: list[float] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.fetches.append(time.monotonic())
                headers = {k: v for k, v in self.headers.items() if k.lower() == "if-none-match"}
                status, up_headers, body = http("GET", proxy.upstream, headers=headers)
                self.send_response(status)
                for k, v in up_headers.items():
                    if k.lower() in ("content-type", "cache-control", "etag"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def count_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.fetches if t0 <= t <= t1)

    def __enter__(self) -> JwksCountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_random_kid_tokens(path: Path, n: int, issuer: str) -> Path:
    """Writes n JWTs to path, one per line, each with a random kid the issuer never had. The
    signature is 256 random bytes: a verifier must reject these on the unknown kid alone."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    with path.open("w") as f:
        for _ in range(n):
            header = {"alg": "RS256", "typ": "at+jwt", "kid": secrets.token_urlsafe(32)}
            claims = {
                "iss": issuer,
                "sub": "flood",
                "aud": AUDIENCE,
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "jti": secrets.token_hex(8),
                "client_id": "flood",
                "scope": SCOPE,
            }
            parts = [
                b64(json.dumps(header, separators=(",", ":")).encode()),
                b64(json.dumps(claims, separators=(",", ":")).encode()),
                b64(secrets.token_bytes(256)),
            ]
            f.write(".".join(parts) + "\n")
    return path


def fetches_allowed(windows: list[tuple[float, float, int]], cooldown: float) -> int:
    """JWKS fetches the cooldown allows over these flood windows (t0, t1, fetches): one at the
    start of each window and one per full cooldown within it."""
    return sum(int((t1 - t0) // cooldown) + 1 for t0, t1, _ in windows)


def run(ctx: Context) -> None:
    """A flood of 10,000 tokens with random kids: JWKS fetches <= 1 per cooldown, and valid-token
    throughput during the flood >= 0.8 of without."""
    cfg = ctx.cfg
    stack = Stack(ctx, "s4")
    client = stack.create_client("bench-s4")
    tokens_file = make_random_kid_tokens(
        stack.dir / "random-kid-tokens.txt", KID_FLOOD_TOKENS, stack.issuer_url
    )
    # The flood: KID_FLOOD_TOKENS distinct random kids, cycled as fast as FLOOD_CONNECTIONS
    # connections go, beside the usual valid load (cfg.connections). A wrk-side pause per request
    # (BENCH_DELAY_MS) would cap the rate, but then the rate depends on the server's latency.
    windows: list[tuple[float, float, int]] = []
    with stack.issuer(workers=1):
        token = stack.get_token(client)
        proxy = JwksCountingProxy(f"{stack.issuer_url}/.well-known/jwks.json", cfg.base_port + 50)
        # The resource service as deployed: default cache settings, counted JWKS fetches.
        env = {**KID_COOLDOWN_ENV, "RESOURCE_JWKS_URL": proxy.url}
        with proxy, stack.resource(workers=1, env=env) as rs:
            url = f"{rs.url}/whoami"
            expect_ok(url, token)
            first = tokens_file.read_text().split()[0]
            status, _, _ = http("GET", url, headers={"Authorization": "Bearer " + first})
            if status != 401:
                raise BenchError(f"a random-kid token got {status} from /whoami, not 401")
            valid_env = {"BENCH_TOKEN": token}

            def calm(i: int) -> float:
                return run_wrk(
                    ctx, "valid /whoami, no flood", url, "bearer.lua", valid_env, warmup=i == 0
                ).rps

            def flooded(i: int) -> tuple[WrkResult, WrkResult]:
                on = cfg.profile and i == 0
                prof = profiler.start(cfg, rs, "resource during kid flood") if on else None
                t0 = time.monotonic()
                flood = start_wrk(
                    cfg,
                    url,
                    "tokens_file.lua",
                    {"BENCH_TOKENS_FILE": str(tokens_file)},
                    connections=FLOOD_CONNECTIONS,
                )
                valid = start_wrk(cfg, url, "bearer.lua", valid_env)
                during = finish_wrk(valid, cfg.duration, "valid /whoami during kid flood")
                fl = finish_wrk(flood, cfg.duration, "kid flood", allow_errors=True)
                t1 = time.monotonic()
                windows.append((t0, t1, proxy.count_between(t0, t1)))
                if prof is not None:
                    profiler.finish(ctx, prof)
                print(
                    f"    valid during the flood: {during.short()}; flood {fl.rps:,.0f}"
                    f" req/s, {fl.non_2xx} rejected; JWKS fetches {windows[-1][2]}",
                    flush=True,
                )
                return during, fl

            m = measure_ratio(cfg.rounds, flooded, calm, lambda runs: runs[0].rps)
            total_fetches = len(proxy.fetches)
    during, fl = m.median_run
    fetches = sum(w[2] for w in windows)
    flood_requests = sum(f.requests for _d, f in m.runs)
    ctx.raw.setdefault("wrk", {})["valid /whoami during kid flood"] = asdict(during)
    ctx.raw.setdefault("wrk", {})["kid flood"] = asdict(fl)
    ctx.raw["kid_flood"] = {
        "jwks_fetches": fetches,
        "jwks_fetches_total": total_fetches,
        "windows_s": [round(w[1] - w[0], 2) for w in windows],
        "fetches_per_window": [w[2] for w in windows],
        "ratios": m.alt.ratios,
    }
    ctx.add(
        Row(
            "4",
            f"valid /whoami during a flood of {KID_FLOOD_TOKENS:,} random-kid tokens"
            f" ({fl.requests:,} requests on {FLOOD_CONNECTIONS} connections) vs without",
            during.short(),
            f"{m.reference:,.0f} req/s",
            round(m.ratio, 3),
            THROUGHPUT_TARGET.text,
            THROUGHPUT_TARGET.met(m.ratio),
            note=f"flood {fl.rps:,.0f} req/s; " + m.alt.note(),
        )
    )
    window = sum(w[1] - w[0] for w in windows)
    allowed = fetches_allowed(windows, KID_COOLDOWN_SECONDS)
    ctx.add(
        Row(
            "4",
            f"JWKS fetches by the resource service during {len(windows)} floods ({window:.0f} s)",
            f"{fetches} fetches ({flood_requests:,} random-kid requests)",
            target=f"<= {allowed} (1 per {KID_COOLDOWN_SECONDS:g} s)",
            passed=fetches <= allowed,
        )
    )


SCENARIO = Scenario("4", run, METHOD)
