"""How fast each service refused the tokens a revocation covers: the probes' first refusals as
p50/p99/max, and the verdict against the bound that applies.

The bound depends on the service's events subscription when the action was requested (its
``/healthz`` "events" state):

* subscription up ("connected"): the revocation is pushed; the target is p99 under
  :data:`EVENTS_TARGET` seconds, for a key and for a user alike;
* subscription down (any other state, or no "events" in ``/healthz``): a revoked key is still
  refused at the service's next JWKS poll, so the bound is the poll interval plus the margin,
  as before pushed revocation; a disabled user's tokens have no bound but their ``exp``, so the
  probes stop at the deadline and the report says so (``no bound``, not a failure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from drill.records import ProbeRun

EVENTS_TARGET = 1.0
PASS, FAIL, NO_BOUND = "pass", "fail", "no bound"


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of ``values``, a None (never refused)
    ranking above every number; None when the rank falls on one, or there are no values."""
    if not values:
        return None
    ranked = sorted(values, key=lambda v: math.inf if v is None else v)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def judge(
    run: ProbeRun,
    *,
    kind: str,
    requested_at: float,
    deadline_s: float,
    poll_bound_s: float,
) -> dict[str, Any]:
    """The service's refusal times (seconds after ``requested_at``) and its verdict."""
    after = [None if t is None else round(t - requested_at, 3) for t in run.first_refusals]
    refused = [t for t in after if t is not None]
    up = run.subscription == "connected"
    p50, p99, worst = percentile(after, 0.5), percentile(after, 0.99), percentile(after, 1.0)
    target: float | None
    if up:
        target = EVENTS_TARGET
        verdict = PASS if p99 is not None and p99 < target else FAIL
        basis = f"p99 < {target:g}s with the subscription up"
    elif kind == "key":
        target = poll_bound_s
        verdict = PASS if worst is not None and worst <= target else FAIL
        basis = f"every probe within {target:g}s (subscription down: the JWKS poll bound)"
    else:
        target = None
        verdict = NO_BOUND
        basis = "no bound (subscription down: tokens live until exp)"
    if len(refused) < len(after):
        note = (
            f"{len(after) - len(refused)} of {len(after)} probes not refused by "
            f"{deadline_s:g}s"
            + ("" if up or kind == "key" else " (subscription down: tokens live until exp)")
        )
    else:
        note = f"all {len(after)} probes refused"
    return {
        "subscription": run.subscription,
        "subscription_up": up,
        "probes": run.probes,
        "refused": len(refused),
        "first_refusal_s": min(refused) if refused else None,
        "p50_s": p50,
        "p99_s": p99,
        "max_s": worst,
        "target_s": target,
        "verdict": verdict,
        "basis": basis,
        "note": note,
        "deadline_s": deadline_s,
        "probe_requests": run.requests,
        # How long each probe request took (sent to answered): a refusal is observed only
        # when its answer arrives, so a slow stack (or a starved drill) shows here.
        "probe_round_trip_p50_s": _rounded(percentile(run.round_trips, 0.5)),
        "probe_round_trip_max_s": _rounded(percentile(run.round_trips, 1.0)),
        "probe_statuses": dict(run.statuses),
        "first_refusals_s": after,
    }


def reason(service: str, what: str, judged: dict[str, Any]) -> str | None:
    """The failure reason for one service's verdict (None: it passed or has no bound)."""
    if judged["verdict"] != FAIL:
        return None
    return (
        f"{service} refused {what} too late: p50 {fmt(judged['p50_s'])}, p99 "
        f"{fmt(judged['p99_s'])}, max {fmt(judged['max_s'])}; target {judged['basis']} "
        f"({judged['note']})"
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def table_lines(services: dict[str, dict[str, Any]]) -> list[str]:
    """The refusal table: per service its subscription, probes, p50/p99/max and verdict."""
    lines = [
        f"  {'SERVICE':<16} {'SUBSCRIPTION':<13} {'PROBES':>6} {'REFUSED':>7} "
        f"{'P50':>8} {'P99':>8} {'MAX':>8}  VERDICT"
    ]
    for name, s in services.items():
        late = f">{s['deadline_s']:g}s"

        def cell(value: float | None, late: str = late) -> str:
            return late if value is None else f"{value:.3f}s"

        lines.append(
            f"  {name:<16} {s['subscription']:<13} {s['probes']:>6} {s['refused']:>7} "
            f"{cell(s['p50_s']):>8} {cell(s['p99_s']):>8} {cell(s['max_s']):>8}  "
            f"{s['verdict'].upper() if s['verdict'] == FAIL else s['verdict']}: {s['basis']}"
            + ("" if s["refused"] == s["probes"] else f"; {s['note']}")
        )
    trips = [
        f"{name} p50 {fmt(s['probe_round_trip_p50_s'])} max {fmt(s['probe_round_trip_max_s'])}"
        for name, s in services.items()
    ]
    lines.append(
        "  probe request round trips (a refusal is seen when its answer arrives): "
        + ", ".join(trips)
    )
    return lines
