"""Refresh-token chains for a wrk load (pure: no process, no I/O).

A refresh token is single use (each redemption rotates it), so a closed-loop load cannot resend
one request. bench/wrk/refresh.lua presents each token once: a thread starts from seeds (fresh
refresh tokens, each its own family, from a file: thread i of n takes lines i, i+n, ...) and
then presents the successor each answer carries, as a client renewing its session does. A
connection's next request is built after its previous answer was read, so every request finds a
token: the seeds restart only the chains an answer without a successor ended (plus the first
request of each connection). At the end the script prints a ``BENCH_CHAIN {...}`` line of its
counters, parsed here, and the database's own count of redeemed and revoked tokens (a token
presented twice revokes its whole family: reuse detection) checks it from the server's side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields

from bench.harness.config import BenchError

# The seeds one wrk run gets: a chain per connection, and as many again for chains an answer
# without a successor ends (wrk refuses a run with more than 1% failed answers anyway).
SEED_SLACK = 8


def seeds_per_run(connections: int) -> int:
    return 2 * connections + SEED_SLACK


@dataclass(frozen=True)
class ChainStats:
    """refresh.lua's counters, summed over its threads."""

    built: int  # requests built (wrk builds one more than it sends, to check the script)
    from_seeds: int  # of them, presenting a seed
    successors: int  # of them, presenting the successor an earlier answer carried
    starved: int  # of them, built with no token left (a dummy token: answered 400)
    renewed: int  # answers 200 carrying a successor
    broken: int  # answers without a successor (not 200, or 200 with no refresh_token)

    @property
    def answered(self) -> int:
        return self.renewed + self.broken

    @property
    def unanswered(self) -> int:
        """Requests built but not answered: the one wrk builds to check the script, and those
        in flight when it stopped (at most one a connection)."""
        return self.built - self.answered


def parse_chain(output: str) -> ChainStats:
    """The BENCH_CHAIN line refresh.lua prints at the end of a run."""
    m = re.search(r"^BENCH_CHAIN (\{.*\})$", output, re.MULTILINE)
    if not m:
        raise BenchError("wrk (refresh.lua) printed no BENCH_CHAIN line:\n" + output[-2000:])
    data = json.loads(m.group(1))
    try:
        return ChainStats(**{f.name: int(data[f.name]) for f in fields(ChainStats)})
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"BENCH_CHAIN line without the expected counters: {m.group(1)}") from exc


def chain_problems(stats: ChainStats, seeds_given: int, connections: int) -> list[str]:
    """Why a run's token accounting does not add up (empty: each token presented once)."""
    problems: list[str] = []
    if stats.starved:
        problems.append(
            f"{stats.starved} requests found no unused refresh token ({seeds_given} seeds for"
            f" {connections} connections, {stats.broken} chains ended by an answer without a"
            " successor)"
        )
    if stats.from_seeds + stats.successors + stats.starved != stats.built:
        problems.append(
            f"the script's counters disagree: {stats.built} built but {stats.from_seeds} seeds +"
            f" {stats.successors} successors + {stats.starved} starved"
        )
    if stats.from_seeds > seeds_given:
        problems.append(f"{stats.from_seeds} seeds presented but only {seeds_given} given")
    if stats.successors > stats.renewed:
        problems.append(
            f"{stats.successors} successors presented but only {stats.renewed} answers carried one"
        )
    if not 0 <= stats.unanswered <= connections + 1:
        problems.append(
            f"{stats.unanswered} requests unanswered at the end, expected 0 to {connections + 1}"
            " (those in flight and the one wrk builds to check the script)"
        )
    return problems


@dataclass(frozen=True)
class Ledger:
    """The database's refresh tokens of the bench's client: redeemed (used_at set) and
    revoked (revoked_at set; a family is revoked when one of its tokens is presented twice)."""

    redeemed: int
    revoked: int

    def __sub__(self, before: Ledger) -> Ledger:
        return Ledger(self.redeemed - before.redeemed, self.revoked - before.revoked)


def ledger_problems(delta: Ledger, runs: list[ChainStats]) -> list[str]:
    """Whether the database saw what the load generator says it sent, over ``runs``: every
    renewed answer is one redemption, no more redemptions than tokens presented, and no family
    revoked (no token presented twice)."""
    renewed = sum(r.renewed for r in runs)
    presented = sum(r.from_seeds + r.successors for r in runs)
    problems: list[str] = []
    if delta.revoked:
        problems.append(
            f"{delta.revoked} refresh tokens revoked during the load: a token was presented"
            " twice (reuse detection ended its family)"
        )
    if not renewed <= delta.redeemed <= presented:
        problems.append(
            f"the database redeemed {delta.redeemed} refresh tokens; the load presented"
            f" {presented} and got {renewed} successors back"
        )
    return problems


class SeedPool:
    """Unused refresh tokens, each handed out once."""

    def __init__(self, tokens: list[str]) -> None:
        if len(set(tokens)) != len(tokens):
            raise BenchError("the seed refresh tokens are not distinct")
        self._tokens = list(tokens)
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._tokens) - self._next

    def take(self, n: int) -> list[str]:
        if n > self.remaining:
            raise BenchError(f"{n} seed refresh tokens wanted, {self.remaining} left")
        taken = self._tokens[self._next : self._next + n]
        self._next += n
        return taken
