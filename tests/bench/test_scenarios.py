"""The scenarios' own arithmetic: the logins' p99, scenario 6's memory bound and RSS checks,
scenario 4's allowance of JWKS fetches, scenario 1's computed Keyhouse / peer figure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import mass_tokens
from bench.harness.config import BenchError
from bench.harness.ratio import Alternation, Measured
from bench.harness.wrk import WrkResult
from bench.scenarios.kidflood import fetches_allowed
from bench.scenarios.memory import MIB, memory_bound, memory_verdict
from bench.scenarios.password import login_p99
from bench.scenarios.token import vs_peer_row

CACHE = 10_000
N = 1_000_000


def _wrk(rps: float, requests: int = 1000, timeouts: int = 0) -> WrkResult:
    return WrkResult(requests, 15.0, rps, 900.0, 1000.0, 1200.0, 1500.0, 0, timeouts)


def test_login_p99_counts_timed_out_logins() -> None:
    def res(requests: int, timeouts: int) -> WrkResult:
        return _wrk(requests / 15, requests, timeouts)

    assert login_p99(res(100, 0))[0] == 1200.0
    assert login_p99(res(100, 5))[0] == float("inf")  # 5 of 105 never answered in time
    assert login_p99(res(0, 8))[0] == float("inf")


def test_the_memory_bound_follows_the_tokens_measured_size() -> None:
    """The bound is what a full cache of the bench's tokens costs (4 bytes an entry per byte of
    token, measured at 3.5) plus 16 MiB, not the 8 KiB per token of the largest allowed token:
    for the bench's ~720-byte tokens that is about 44 MiB, not 94."""
    small = memory_bound(CACHE, 722)
    assert 43 * MIB < small < 45 * MIB
    assert small < CACHE * 8192 + 16 * MIB
    assert memory_bound(CACHE, 1444) - 16 * MIB == 2 * (small - 16 * MIB)


def _samples(start: int, half: int, end: int) -> list[tuple[int, int]]:
    return [(0, start), (N // 2, half), (N, end)]


def test_memory_growth_past_what_the_cache_can_hold_fails() -> None:
    # The last full run: 53 -> 80 -> 80 MiB, well within the cache's share.
    assert memory_verdict(_samples(53 * MIB, 80 * MIB, 80 * MIB), N, CACHE, 722)[2] is True
    # 50 MiB of growth passed the 8 KiB-per-token bound (94 MiB); the cache cannot hold it.
    assert memory_verdict(_samples(53 * MIB, 103 * MIB, 103 * MIB), N, CACHE, 722)[2] is False
    # Still growing in the second half: not bounded.
    assert memory_verdict(_samples(53 * MIB, 60 * MIB, 80 * MIB), N, CACHE, 722)[2] is False
    # Too few tokens to fill the cache several times over: no verdict.
    assert memory_verdict([(0, 53 * MIB), (3000, 54 * MIB)], 3000, CACHE, 722)[2] is None


def test_an_unread_rss_fails_the_memory_scenario() -> None:
    with pytest.raises(BenchError, match="RSS"):
        memory_verdict(_samples(0, 0, 0), N, CACHE, 722)
    with pytest.raises(BenchError, match="RSS"):
        memory_verdict(_samples(53 * MIB, 80 * MIB, 0), N, CACHE, 722)


def test_rss_of_a_process_that_is_gone_is_an_error_not_zero() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises((OSError, ValueError)):
        mass_tokens.rss_bytes(proc.pid)
    assert mass_tokens.rss_bytes(os.getpid()) > 0


def test_one_jwks_fetch_per_window_start_and_per_full_cooldown() -> None:
    assert fetches_allowed([(0.0, 15.0, 1), (20.0, 35.0, 0), (40.0, 55.0, 1)], 30.0) == 3
    assert fetches_allowed([(0.0, 61.0, 0)], 30.0) == 3


def test_keyhouse_over_the_peer_is_labelled_computed_beside_the_raw_ratio() -> None:
    kh = Measured(Alternation([820.0], [1000.0, 1000.0]), [_wrk(911.0)])
    pr = Measured(Alternation([560.0], [1000.0, 1000.0]), [_wrk(594.0)])
    row = vs_peer_row(kh, pr)
    assert row.name.startswith("tokens/s Keyhouse / node-oidc-provider")  # the History column
    assert "computed" in row.name
    assert row.ratio == pytest.approx(0.82 / 0.56, abs=1e-3)
    assert "raw ratio 1.53" in row.measured
    assert (row.target, row.passed) == ("> 1.0", True)
