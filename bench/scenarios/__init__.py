"""The scenarios, one module each, by the name ``--only`` takes; the order is the run order."""

from __future__ import annotations

from bench.harness.config import Scenario
from bench.scenarios import (
    balancer,
    baseline,
    ceilings,
    dpop,
    kidflood,
    memory,
    password,
    refresh,
    slowclients,
    token,
    whoami,
    workers,
)

SCENARIOS: dict[str, Scenario] = {
    "ceilings": ceilings.SCENARIO,
    "token": token.SCENARIO,
    "whoami": whoami.SCENARIO,
    "baseline": baseline.SCENARIO,
    "kidflood": kidflood.SCENARIO,
    "workers": workers.SCENARIO,
    "memory": memory.SCENARIO,
    "password": password.SCENARIO,
    "slowclients": slowclients.SCENARIO,
    "refresh": refresh.SCENARIO,
    "balancer": balancer.SCENARIO,
    "dpop": dpop.SCENARIO,
}


def numbers() -> set[str]:
    """Every scenario's number: a run of all of them is a full run."""
    return {s.number for s in SCENARIOS.values()}


def methods() -> list[str]:
    """The scenarios' paragraphs of the report's Method section, in run order."""
    return [s.method for s in SCENARIOS.values() if s.method]
