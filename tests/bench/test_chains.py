"""bench/harness/chains.py: the refresh load's accounting (each refresh token presented once),
checked from the load generator's counters and from the database's."""

from __future__ import annotations

import pytest

from bench.harness.chains import (
    ChainStats,
    Ledger,
    SeedPool,
    chain_problems,
    ledger_problems,
    parse_chain,
    seeds_per_run,
)
from bench.harness.config import BenchError

CONNECTIONS = 32


def _stats(**kw: int) -> ChainStats:
    """A clean run: 32 chains from seeds (plus the token of the request wrk builds to check the
    script), 1,000 successors presented, 32 requests in flight at the end."""
    base = {
        "built": 1033,
        "from_seeds": 33,
        "successors": 1000,
        "starved": 0,
        "renewed": 1001,
        "broken": 0,
    }
    return ChainStats(**{**base, **kw})


def test_parse_chain_reads_the_scripts_counters() -> None:
    out = (
        "Running 2s test @ http://127.0.0.1:18020/token\n"
        'BENCH_JSON {"requests":1001}\n'
        'BENCH_CHAIN {"built":1033,"from_seeds":33,"successors":1000,"starved":0,'
        '"renewed":1001,"broken":0}\n'
    )
    stats = parse_chain(out)
    assert stats == _stats()
    assert stats.answered == 1001
    assert stats.unanswered == 32


def test_parse_chain_refuses_output_without_the_line_or_a_counter() -> None:
    with pytest.raises(BenchError, match="no BENCH_CHAIN"):
        parse_chain("BENCH_JSON {}\n")
    with pytest.raises(BenchError, match="expected counters"):
        parse_chain('BENCH_CHAIN {"built":3}\n')


def test_a_clean_run_adds_up() -> None:
    assert chain_problems(_stats(), seeds_per_run(CONNECTIONS), CONNECTIONS) == []


def test_a_request_without_a_fresh_token_fails_the_run() -> None:
    stats = _stats(built=1034, successors=994, starved=7, broken=7, renewed=994)
    problems = chain_problems(stats, 33, CONNECTIONS)
    assert len(problems) == 1
    assert "7 requests found no unused refresh token" in problems[0]


def test_counters_that_do_not_add_up_fail_the_run() -> None:
    # More seeds presented than the file held: one must have been presented twice.
    assert any(
        "41 seeds presented but only 40 given" in p
        for p in chain_problems(_stats(from_seeds=41, built=1041), 40, CONNECTIONS)
    )
    # A successor presented that no answer carried.
    assert any(
        "only 900 answers" in p
        for p in chain_problems(_stats(renewed=900, built=933), 72, CONNECTIONS)
    )
    # The script's own sum.
    assert any("disagree" in p for p in chain_problems(_stats(built=1100), 72, CONNECTIONS))
    # More unanswered requests than connections (+ the one built to check the script).
    assert any(
        "74 requests unanswered" in p
        for p in chain_problems(_stats(built=1075, from_seeds=75), 75, CONNECTIONS)
    )


def test_the_database_must_agree_with_the_load() -> None:
    runs = [_stats(), _stats()]  # 2,002 successors answered, 2,066 tokens presented
    assert ledger_problems(Ledger(2064, 0), runs) == []
    # A token presented twice: its family revoked.
    revoked = ledger_problems(Ledger(2064, 3), runs)
    assert len(revoked) == 1
    assert "presented twice" in revoked[0]
    # Fewer redemptions than successors answered, or more than tokens presented.
    assert ledger_problems(Ledger(2000, 0), runs)
    assert ledger_problems(Ledger(2067, 0), runs)


def test_ledger_difference() -> None:
    assert Ledger(2100, 1) - Ledger(100, 1) == Ledger(2000, 0)


def test_seed_pool_hands_each_token_out_once() -> None:
    pool = SeedPool([f"t{i}" for i in range(10)])
    first, second = pool.take(4), pool.take(4)
    assert not set(first) & set(second)
    assert pool.remaining == 2
    with pytest.raises(BenchError, match="3 seed refresh tokens wanted, 2 left"):
        pool.take(3)
    with pytest.raises(BenchError, match="not distinct"):
        SeedPool(["a", "b", "a"])


def test_seeds_per_run_covers_every_connection_twice() -> None:
    assert seeds_per_run(CONNECTIONS) >= 2 * CONNECTIONS + 1
