"""The drill's time series for its picture (the report's ``timeline``): per-second buckets of
the load's requests, failures by cause and expected refusals; each key's publish, activate,
retire and revoke times; per service, the first acceptance of each kid and the first refusal
after each revocation. Every time is in seconds since the load started (``started_at``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from drill.records import Revocation, ServiceState, Timeline

KEY_TIMES = (
    ("publish", "publish_at"),
    ("activate", "activate_at"),
    ("retire", "retire_at"),
    ("revoke", "revoked_at"),
)


def _series(counts: Counter[int], length: int) -> list[int]:
    return [counts.get(i, 0) for i in range(length)]


def _since(at: object, started: float) -> float | None:
    return round(float(at) - started, 3) if isinstance(at, int | float) else None


def timeline_section(
    timeline: Timeline,
    *,
    duration: float,
    keys: Sequence[Mapping[str, Any]],
    states: Sequence[ServiceState],
    revocations: Sequence[Revocation],
) -> dict[str, Any]:
    started = timeline.started
    length = max(1, math.ceil(duration), *(b + 1 for b in timeline.requests))
    key_times = []
    for key in keys:
        entry: dict[str, Any] = {"kid": str(key.get("kid"))}
        for name, field in KEY_TIMES:
            entry[name + "_s"] = _since(key.get(field), started)
        key_times.append(entry)
    first_refusal: dict[str, list[dict[str, Any]]] = {s.name: [] for s in states}
    actions = []
    for rv in revocations:
        label = f"{rv.kind} {rv.subject}"
        actions.append(
            {"kind": rv.kind, "subject": rv.subject, "at_s": _since(rv.requested_at, started)}
        )
        for name, run in rv.runs.items():
            refused = [t for t in run.first_refusals if t is not None]
            first_refusal.setdefault(name, []).append(
                {"revocation": label, "at_s": _since(min(refused), started) if refused else None}
            )
    return {
        "started_at": started,
        "bucket_s": 1,
        "duration_s": round(duration, 3),
        "requests": _series(timeline.requests, length),
        "expected_refusals": _series(timeline.expected, length),
        "failures": {
            cause: _series(counts, length) for cause, counts in sorted(timeline.failures.items())
        },
        "keys": key_times,
        "actions": actions,
        "first_accept": {
            s.name: {kid: _since(at, started) for kid, at in sorted(s.first_accept.items())}
            for s in states
        },
        "first_refusal": first_refusal,
    }
