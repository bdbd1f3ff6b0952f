"""The report's revocation sections: per service the refusal times and verdict
(:mod:`drill.refusals`), the first probe's answers, and when the revocation's event appeared on
the issuer's stream (:mod:`drill.stream`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drill import refusals
from drill.config import DrillConfig
from drill.records import Revocation, ServiceState
from drill.stream import StreamLog


def _round(at: float | None, since: float) -> float | None:
    return None if at is None else round(at - since, 3)


def on_stream(stream: StreamLog, rv: Revocation) -> dict[str, Any]:
    """When the revocation's event appeared on the issuer's stream, as the drill saw it."""
    seen = stream.first_seen(rv.event_claim, rv.event_value, rv.requested_at)
    connected = stream.connected_at is not None and stream.connected_at <= rv.requested_at
    return {
        "state": stream.state,
        "connected_before_the_action": connected,
        "event_after_s": _round(seen, rv.requested_at),
    }


def _probe_log(log: Sequence[tuple[float, float, str]], since: float) -> list[dict[str, Any]]:
    return [
        {
            "sent_after_s": round(sent - since, 3),
            "answered_after_s": round(answered - since, 3),
            "status": status,
        }
        for sent, answered, status in log
    ]


def key_revocation(
    cfg: DrillConfig, rv: Revocation, states: Sequence[ServiceState]
) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for s in states:
        run = rv.runs[s.name]
        judged = refusals.judge(
            run,
            kind="key",
            requested_at=rv.requested_at,
            deadline_s=round(rv.deadline - rv.requested_at, 3),
            poll_bound_s=cfg.revocation_bound,
        )
        replacement = s.first_accept.get(rv.replacement_kid or "")
        accepted_at = [answered for _, answered, status in run.log if status == "200"]
        worst = judged["max_s"]
        per[s.name] = {
            **judged,
            # The first refusal at this service, by any probe.
            "refused_after_s": judged["first_refusal_s"],
            "within_bound": worst is not None and worst <= cfg.revocation_bound,
            "last_accepted_after_s": _round(
                max(accepted_at) if accepted_at else None, rv.requested_at
            ),
            # Every answer of the first probe: when it was sent and answered (s after the
            # revocation request) and what it got, so a slow answer or a 503 is told apart
            # from an acceptance.
            "probe_log": _probe_log(run.log, rv.requested_at),
            "left_jwks_cache_after_s": _round(s.kid_gone.get(rv.kid), rv.requested_at),
            "replacement_accepted_after_s": _round(replacement, rv.requested_at),
        }
    return {
        "kid": rv.kid,
        "replacement_kid": rv.replacement_kid,
        "requested_at": rv.requested_at,
        # How long the admin API took to revoke (the probes ran meanwhile).
        "admin_answered_after_s": round(rv.answered_at - rv.requested_at, 3),
        "bound_s": cfg.revocation_bound,
        "poll_interval_s": cfg.poll_interval,
        "margin_s": cfg.revocation_margin,
        "events_target_s": refusals.EVENTS_TARGET,
        "services": per,
    }


def user_revocation(
    cfg: DrillConfig, rv: Revocation, enabled: Mapping[str, Any] | None
) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for name, run in rv.runs.items():
        judged = refusals.judge(
            run,
            kind="user",
            requested_at=rv.requested_at,
            deadline_s=round(rv.deadline - rv.requested_at, 3),
            poll_bound_s=cfg.revocation_bound,
        )
        per[name] = {**judged, "probe_log": _probe_log(run.log, rv.requested_at)}
    response = rv.response
    return {
        "username": rv.subject,
        "requested_at": rv.requested_at,
        "admin_answered_after_s": round(rv.answered_at - rv.requested_at, 3),
        "refresh_tokens_revoked": response.get("refresh_tokens_revoked"),
        "sessions_ended": response.get("sessions_ended"),
        "events_target_s": refusals.EVENTS_TARGET,
        "deadline_s": cfg.refusal_deadline,
        "enabled_again": dict(enabled) if enabled is not None else None,
        "services": per,
    }
