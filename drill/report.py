"""The drill's verdict: the report as a JSON-ready dict (pass or fail, with the reasons) and
as the table ``issuer drill`` prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drill import refusals, revocation_report
from drill.config import DrillConfig
from drill.records import Revocation, Rotation, ServiceState, Timeline
from drill.series import timeline_section
from drill.stream import StreamLog


def build_report(
    cfg: DrillConfig,
    *,
    states: Sequence[ServiceState],
    rotation_log: Sequence[Rotation],
    revocations: Sequence[Revocation],
    failures: Mapping[str, int],
    failures_by_phase: Mapping[str, int],
    problems: Sequence[str],
    schedule: dict[str, Any],
    duration: float,
    timeline: Timeline | None = None,
    key_list: Sequence[Mapping[str, Any]] = (),
    user_enabled: Mapping[str, Any] | None = None,
    stream: StreamLog | None = None,
) -> dict[str, Any]:
    """What the drill saw, and ``ok`` with the ``reasons`` it failed for (none: it passed)."""
    services: dict[str, Any] = {}
    for s in states:
        keys = set(s.fetches_before) | set(s.fetches_after)
        services[s.name] = {
            "url": s.url,
            "requests": s.requests,
            "ok": s.ok,
            "failed": s.failed,
            "expected_refusals": s.expected_refusals,
            "jwks_fetches": {
                "before": s.fetches_before,
                "after": s.fetches_after,
                "delta": {
                    k: s.fetches_after.get(k, 0) - s.fetches_before.get(k, 0) for k in sorted(keys)
                },
            },
        }
    rotations: list[dict[str, Any]] = []
    for r in rotation_log:
        per: dict[str, Any] = {}
        for s in states:
            accepted = s.first_accept.get(r.kid)
            seen = s.kid_seen.get(r.kid)
            per[s.name] = {
                "first_accept_after_activation_s": _round(accepted, r.activate_at),
                "first_accept_after_request_s": _round(accepted, r.requested_at),
                "known_before_activation_s": None
                if seen is None
                else round(r.activate_at - seen, 3),
            }
        rotations.append(
            {
                "index": r.index,
                "previous_kid": r.previous_kid,
                "kid": r.kid,
                "created": r.created,
                "requested_at": r.requested_at,
                "publish_at": r.publish_at,
                "activate_at": r.activate_at,
                "published_ahead_s": round(r.activate_at - max(r.publish_at, r.requested_at), 3),
                "services": per,
            }
        )
    key_record = next((r for r in revocations if r.kind == "key"), None)
    user_record = next((r for r in revocations if r.kind == "user"), None)
    stream = stream or StreamLog()
    revocation = (
        None if key_record is None else revocation_report.key_revocation(cfg, key_record, states)
    )
    user_revocation = (
        None
        if user_record is None
        else revocation_report.user_revocation(cfg, user_record, user_enabled)
    )
    for section, record in ((revocation, key_record), (user_revocation, user_record)):
        if section is not None and record is not None:
            section["issuer_stream"] = revocation_report.on_stream(stream, record)
    total = sum(s.requests for s in states)
    failed = sum(failures.values())
    reasons = list(problems)
    if failures_by_phase.get("rotations"):
        reasons.append(f"{failures_by_phase['rotations']} failures during planned rotations")
    if failures_by_phase.get("after_revocation"):
        reasons.append(
            f"{failures_by_phase['after_revocation']} valid requests failed after the revocation"
        )
    for entry in rotations:
        for name, data in entry["services"].items():
            if data["first_accept_after_activation_s"] is None:
                reasons.append(f"{name} never accepted a token signed by {entry['kid']}")
    if user_revocation is not None:
        for name, data in user_revocation["services"].items():
            why = refusals.reason(name, f"user {user_revocation['username']}'s tokens", data)
            if why:
                reasons.append(why)
    if revocation is not None:
        for name, data in revocation["services"].items():
            if data["verdict"] != refusals.FAIL:
                continue
            if data["subscription_up"]:
                reasons.append(refusals.reason(name, "the revoked key", data) or "")
            else:
                reasons.append(
                    f"{name} did not refuse the revoked key within {cfg.revocation_bound:g}s"
                    f" (probe saw {probe_summary(data['probe_log'])})"
                )
    return {
        "ok": not reasons,
        "reasons": reasons,
        "issuer": cfg.issuer,
        "duration_s": round(duration, 3),
        "schedule": schedule,
        "settings": {
            "rotations": cfg.rotations,
            "interval_s": cfg.interval,
            "revoke": cfg.revoke,
            "revoke_user": cfg.revoke_user,
            "probes": cfg.probes,
            "refusal_deadline_s": cfg.refusal_deadline,
            "concurrency": cfg.concurrency,
            "rate_per_s": cfg.rate,
            "token_interval_s": cfg.token_interval,
        },
        "requests": {
            "total": total,
            "ok": sum(s.ok for s in states),
            "failed": failed,
            "expected_refusals": sum(s.expected_refusals for s in states),
        },
        "failures_by_cause": dict(failures),
        "drill_loop_lag": _loop_lag(timeline),
        "failures_by_phase": {
            "rotations": failures_by_phase.get("rotations", 0),
            "after_revocation": failures_by_phase.get("after_revocation", 0),
        },
        "services": services,
        "rotations": rotations,
        "revocation": revocation,
        "user_revocation": user_revocation,
        "timeline": timeline_section(
            timeline or Timeline(started=0.0),
            duration=duration,
            keys=key_list,
            states=states,
            revocations=revocations,
        ),
    }


def _loop_lag(timeline: Timeline | None) -> dict[str, float | None]:
    lags = timeline.loop_lags if timeline is not None else []
    p50, p99 = refusals.percentile(lags, 0.5), refusals.percentile(lags, 0.99)
    return {
        "p50_s": None if p50 is None else round(p50, 3),
        "p99_s": None if p99 is None else round(p99, 3),
        "max_s": round(max(lags), 3) if lags else None,
    }


def _round(at: float | None, since: float) -> float | None:
    return None if at is None else round(at - since, 3)


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def probe_summary(log: list[dict[str, Any]]) -> str:
    """The revocation probe's answers as runs: ``200 x12 0.01-0.55s, 401 0.60s``.

    Times are when each answer arrived (seconds after the revocation was requested); a probe
    that waited long for its answer shows as a gap in the times."""
    runs: list[tuple[str, int, float, float]] = []
    for entry in log:
        status, at = entry["status"], entry["answered_after_s"]
        if runs and runs[-1][0] == status:
            first_status, count, first, _ = runs[-1]
            runs[-1] = (first_status, count + 1, first, at)
        else:
            runs.append((status, 1, at, at))
    if not runs:
        return "no answer"
    parts = []
    for status, count, first, last in runs:
        if count == 1:
            parts.append(f"{status} {first:.2f}s")
        else:
            parts.append(f"{status} x{count} {first:.2f}-{last:.2f}s")
    return ", ".join(parts)


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    req = report["requests"]
    n_rot = len(report["rotations"])
    actions = [
        *(["1 user revocation"] if report.get("user_revocation") else []),
        "1 key revocation" if report["revocation"] else "no key revocation",
    ]
    lines.append(
        f"Keyhouse drill against {report['issuer']}: {n_rot} planned rotation(s), "
        f"{', '.join(actions)}, {report['duration_s']:.1f}s"
    )
    lines.append(
        f"requests: {req['total']}  ok: {req['ok']}  failed: {req['failed']}  "
        f"refused as expected (revoked kid): {req['expected_refusals']}"
    )
    lag = report.get("drill_loop_lag") or {}
    if lag.get("max_s") is not None:
        lines.append(
            f"the drill's own event loop woke late by p50 {refusals.fmt(lag['p50_s'])}, "
            f"p99 {refusals.fmt(lag['p99_s'])}, max {refusals.fmt(lag['max_s'])} "
            "(a busy machine: every answer is observed that much later)"
        )
    phases = report["failures_by_phase"]
    lines.append(
        f"failures: during planned rotations {phases['rotations']}, "
        f"after the revocation {phases['after_revocation']}"
    )
    for cause, count in sorted(report["failures_by_cause"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count:>7}  {cause}")
    lines.append("")
    lines.append(
        f"{'SERVICE':<16} {'REQUESTS':>9} {'OK':>9} {'FAILED':>7} "
        f"{'JWKS 200':>9} {'JWKS 304':>9} {'JWKS ERR':>9}"
    )
    for name, s in report["services"].items():
        d = s["jwks_fetches"]["delta"]
        lines.append(
            f"{name:<16} {s['requests']:>9} {s['ok']:>9} {s['failed']:>7} "
            f"{d.get('ok', 0):>9} {d.get('not_modified', 0):>9} {d.get('error', 0):>9}"
        )
    for r in report["rotations"]:
        lines.append("")
        lines.append(
            f"rotation {r['index']}: {r['previous_kid'] or '?'} -> {r['kid']} "
            f"(published {r['published_ahead_s']:.1f}s before it signed)"
        )
        lines.append(
            f"  {'SERVICE':<16} {'KNOWN BEFORE ACTIVATION':>24} {'FIRST ACCEPTED AFTER':>21}"
        )
        for name, s in r["services"].items():
            lines.append(
                f"  {name:<16} {_fmt(s['known_before_activation_s']):>24} "
                f"{_fmt(s['first_accept_after_activation_s']):>21}"
            )
    _user_lines(report.get("user_revocation"), lines)
    rv = report["revocation"]
    if rv is not None:
        lines.append("")
        lines.append(
            f"revocation of {rv['kid']} (now signing: {rv['replacement_kid']}); bound "
            f"{rv['bound_s']:g}s = poll interval {rv['poll_interval_s']:g}s + margin "
            f"{rv['margin_s']:g}s; the admin API answered after "
            f"{rv['admin_answered_after_s']:.2f}s"
        )
        lines.append(
            f"  {'SERVICE':<16} {'REFUSED AFTER':>14} {'WITHIN BOUND':>13} "
            f"{'LAST ACCEPTED':>14} {'NEW KID OK AFTER':>17}  PROBE SAW"
        )
        for name, s in rv["services"].items():
            lines.append(
                f"  {name:<16} {_fmt(s['refused_after_s']):>14} "
                f"{'yes' if s['within_bound'] else 'NO':>13} "
                f"{_fmt(s['last_accepted_after_s']):>14} "
                f"{_fmt(s['replacement_accepted_after_s']):>17}  "
                f"{probe_summary(s['probe_log'])}"
            )
        lines.append("  " + _stream_line(rv["issuer_stream"]))
        lines.append(
            f"  the revoked key's tokens, {next(iter(rv['services'].values()))['probes']} "
            "probes per service (s after the revocation request):"
        )
        lines.extend(refusals.table_lines(rv["services"]))
    lines.append("")
    if report.get("html"):
        lines.append(f"HTML report with the timeline: {report['html']}")
    if report["ok"]:
        lines.append("RESULT: PASS")
    else:
        lines.append("RESULT: FAIL - " + "; ".join(report["reasons"]))
    return "\n".join(lines) + "\n"


def _user_lines(uv: dict[str, Any] | None, lines: list[str]) -> None:
    if uv is None:
        return
    lines.append("")
    enabled = uv["enabled_again"]
    again = (
        "not attempted"
        if enabled is None
        else "yes"
        if enabled.get("enabled")
        else f"NO ({enabled.get('error', 'the issuer did not say it is enabled')})"
    )
    lines.append(
        f"user revocation: {uv['username']} disabled through the admin API (it answered after "
        f"{uv['admin_answered_after_s']:.2f}s: {uv['refresh_tokens_revoked']} refresh tokens "
        f"revoked, {uv['sessions_ended']} sessions ended); enabled again after the drill: "
        f"{again}"
    )
    lines.append("  " + _stream_line(uv["issuer_stream"]))
    lines.append("  the user's tokens (s after the disable request):")
    lines.extend(refusals.table_lines(uv["services"]))


def _stream_line(stream: dict[str, Any]) -> str:
    at = stream["event_after_s"]
    if at is not None:
        late = "" if stream["connected_before_the_action"] else " (the drill connected late)"
        return f"its event appeared on the issuer's stream after {at:.3f}s{late}"
    return f"its event was not seen on the issuer's stream ({stream['state']})"
