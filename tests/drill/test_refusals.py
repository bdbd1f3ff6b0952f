"""Refusal times as percentiles, and the verdict by the events subscription's state."""

from __future__ import annotations

import pytest

from drill.records import ProbeRun
from drill.refusals import EVENTS_TARGET, FAIL, NO_BOUND, PASS, judge, percentile, reason


def test_percentile_is_nearest_rank_with_none_above_every_number() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([0.3, 0.1, 0.2], 0.5) == 0.2
    assert percentile([0.1, None, None], 0.5) is None
    assert percentile([0.1, 0.2, None], 0.5) == 0.2
    assert percentile([0.1, 0.2, None], 1.0) is None
    assert percentile([], 0.5) is None


def _run(subscription: str, *after: float | None) -> ProbeRun:
    return ProbeRun(
        subscription=subscription,
        probes=len(after),
        first_refusals=[None if a is None else 100.0 + a for a in after],
    )


def _judge(run: ProbeRun, kind: str) -> dict[str, object]:
    return judge(run, kind=kind, requested_at=100.0, deadline_s=20, poll_bound_s=65)


@pytest.mark.parametrize("kind", ["key", "user"])
def test_subscription_up_targets_p99_under_a_second(kind: str) -> None:
    fast = _judge(_run("connected", 0.01, 0.02, 0.05), kind)
    assert fast["verdict"] == PASS
    assert fast["target_s"] == EVENTS_TARGET
    assert (fast["p50_s"], fast["p99_s"], fast["max_s"]) == (0.02, 0.05, 0.05)
    assert fast["first_refusal_s"] == 0.01
    assert fast["note"] == "all 3 probes refused"
    slow = _judge(_run("connected", 0.01, 0.02, 1.5), kind)
    assert slow["verdict"] == FAIL
    assert reason("photos", "the tokens", slow) == (
        "photos refused the tokens too late: p50 0.020s, p99 1.500s, max 1.500s; target p99 "
        "< 1s with the subscription up (all 3 probes refused)"
    )
    never = _judge(_run("connected", 0.01, None), kind)
    assert never["verdict"] == FAIL
    assert never["note"] == "1 of 2 probes not refused by 20s"


def test_key_with_the_subscription_down_keeps_the_poll_bound() -> None:
    within = _judge(_run("connecting", 30.0, 64.9), "key")
    assert within["verdict"] == PASS
    assert within["target_s"] == 65
    assert within["subscription_up"] is False
    late = _judge(_run("absent", 30.0, 66.0), "key")
    assert late["verdict"] == FAIL


def test_user_with_the_subscription_down_has_no_bound() -> None:
    judged = _judge(_run("down", None, None), "user")
    assert judged["verdict"] == NO_BOUND
    assert judged["target_s"] is None
    assert judged["refused"] == 0
    assert judged["note"] == (
        "2 of 2 probes not refused by 20s (subscription down: tokens live until exp)"
    )
    assert reason("photos", "user ada's tokens", judged) is None


def test_probe_round_trips_are_reported() -> None:
    run = _run("connected", 0.2, 0.3)
    run.round_trips = [0.01, 0.02, 0.5]
    judged = _judge(run, "user")
    assert judged["probe_round_trip_p50_s"] == 0.02
    assert judged["probe_round_trip_max_s"] == 0.5
    assert _judge(_run("connected"), "user")["probe_round_trip_p50_s"] is None
