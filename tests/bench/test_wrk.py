"""bench/harness/wrk.py: wrk's output parsed."""

from __future__ import annotations

import json

from bench.harness.wrk import parse_wrk


def test_parse_wrk_output() -> None:
    bench_json = {
        "requests": 2000,
        "duration_us": 2000000,
        "bytes": 2544220,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1},
        "latency_us": {
            "min": 10712,
            "mean": 30751.1,
            "max": 104588,
            "stdev": 14177.1,
            "p50": 28885,
            "p90": 49417,
            "p99": 95070,
            "p999": 104000,
        },
    }
    sample = (
        "Running 2s test @ http://127.0.0.1:18000/token\n"
        "  1 threads and 32 connections\n"
        "  2000 requests in 2.00s, 2.43MB read\n"
        "  Non-2xx or 3xx responses: 3\n"
        "Requests/sec:    1000.00\n"
        f"BENCH_JSON {json.dumps(bench_json, separators=(',', ':'))}\n"
    )
    res = parse_wrk(sample)
    assert res.requests == 2000
    assert res.rps == 1000.0
    assert res.p50_ms == 28.885
    assert res.p99_ms == 95.07
    assert res.non_2xx == 3
    assert res.socket_errors == 1
