"""A revocation's probes: each records its first refusal or stops at the deadline, at a pace
never faster than PROBE_PAUSE each nor PROBE_RATE a second together at one service."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from drill.client import StackClient
from drill.config import DrillConfig
from drill.records import Revocation
from drill.revocations import PROBE_PAUSE, PROBE_RATE, measure, probe_pause
from drill.runner import Drill


def test_probe_pause_caps_the_probes_rate_at_a_service() -> None:
    assert probe_pause(1) == PROBE_PAUSE
    assert probe_pause(10) == PROBE_PAUSE
    assert probe_pause(40) == 40 / PROBE_RATE
    assert 100 / probe_pause(100) == PROBE_RATE


def _drill(refuse_after: float | None, state: str | None) -> tuple[Drill, dict[str, float]]:
    """A drill over a fake stack whose photos refuses every token ``refuse_after`` seconds
    after the action was sent (None: never); its /healthz shows the events ``state``."""
    config = DrillConfig(
        issuer="http://issuer", resources={"photos": "http://photos"}, client_id="c",
        client_secret="s", probes=4, rotations=0, revoke=True,
    )  # fmt: skip
    drill = Drill(config)
    clock: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"events": {"state": state}} if state else {})
        acted = clock.get("acted")
        if refuse_after is not None and acted is not None and time.time() >= acted + refuse_after:
            return httpx.Response(401, json={"error": "invalid_token"})
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    drill._stack = StackClient(http, "http://issuer", "c", "s")
    return drill, clock


def _measure(drill: Drill, clock: dict[str, float], deadline: float) -> Revocation:
    async def action() -> dict[str, Any]:
        clock["acted"] = time.time()
        return {"disabled": True}

    held = {"photos": ["t1", "t2"]}
    return asyncio.run(measure(drill, "user", "ada", held, action, deadline))


def test_every_probe_records_its_first_refusal() -> None:
    drill, clock = _drill(0.2, "connected")
    revocation = _measure(drill, clock, 5.0)
    run = revocation.runs["photos"]
    assert run.subscription == "connected"
    assert revocation.response == {"disabled": True}
    assert drill.revocations == [revocation]
    assert len(run.first_refusals) == 4
    after = [t - revocation.requested_at for t in run.first_refusals if t is not None]
    assert len(after) == 4
    assert all(0.2 <= t < 0.2 + PROBE_PAUSE + 0.5 for t in after)
    assert run.statuses["401"] == 4
    assert run.log[-1][2] == "401"  # the first probe's answers, ending with its refusal
    assert len(run.round_trips) == run.requests


def test_probes_stop_at_the_deadline_when_never_refused() -> None:
    drill, clock = _drill(None, None)
    started = time.time()
    revocation = _measure(drill, clock, 0.3)
    assert 0.3 <= time.time() - started < 2
    run = revocation.runs["photos"]
    assert run.subscription == "absent"  # /healthz has no "events"
    assert run.first_refusals == [None] * 4
    assert set(run.statuses) == {"200"}
