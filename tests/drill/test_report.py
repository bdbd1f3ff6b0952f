"""The drill's report records what its revocation probe saw, every time (issue 13.9)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from drill.config import DrillConfig
from drill.records import ProbeRun, Revocation
from drill.report import format_report, probe_summary
from drill.runner import Drill


def _entry(sent: float, answered: float, status: str) -> dict[str, Any]:
    return {"sent_after_s": sent, "answered_after_s": answered, "status": status}


def test_probe_summary_groups_runs_of_one_status() -> None:
    log = [
        _entry(0.0, 0.05, "200"),
        _entry(0.1, 0.15, "200"),
        _entry(0.2, 3.2, "error: ReadTimeout"),
        _entry(3.3, 3.4, "503"),
        _entry(3.5, 7.39, "401"),
    ]
    assert probe_summary(log) == (
        "200 x2 0.05-0.15s, error: ReadTimeout 3.20s, 503 3.40s, 401 7.39s"
    )
    assert probe_summary([]) == "no answer"


def test_report_lists_every_probe_in_json_and_table() -> None:
    config = DrillConfig(
        issuer="http://127.0.0.1:1",
        resources={"photos": "http://127.0.0.1:2", "contacts": "http://127.0.0.1:3"},
        client_id="c",
        client_secret="s",
        rotations=0,
        revoke=True,
        poll_interval=1,
        revocation_margin=4,
    )
    drill = Drill(config)
    drill.started = drill.timeline.started = 1000.0
    drill.ended = 1010.0
    revocation = Revocation("key", "old", 1000.0, 1000.1, 1015.0, "new")
    drill.revocations.append(revocation)
    # photos: the first probe refused at 0.28 s, the second at 0.30 s
    revocation.runs["photos"] = ProbeRun(
        subscription="absent",
        probes=2,
        first_refusals=[1000.28, 1000.30],
        requests=3,
        statuses=Counter({"200": 1, "401": 2}),
        log=[(1000.1, 1000.2, "200"), (1000.25, 1000.28, "401")],
    )
    # contacts: the first probe waited 5.7 s for one answer and was refused at 7.39 s
    revocation.runs["contacts"] = ProbeRun(
        subscription="down",
        probes=2,
        first_refusals=[1007.39, 1000.5],
        requests=5,
        statuses=Counter({"200": 2, "503": 1, "401": 2}),
        log=[
            (1000.1, 1000.2, "200"),
            (1000.3, 1006.0, "200"),
            (1006.1, 1006.2, "503"),
            (1006.3, 1007.39, "401"),
        ],
    )
    report = drill.report()

    per = report["revocation"]["services"]
    assert per["photos"]["within_bound"] is True
    assert per["photos"]["verdict"] == "pass"
    assert per["photos"]["probe_statuses"] == {"200": 1, "401": 2}
    assert per["photos"]["refused_after_s"] == 0.28
    assert per["photos"]["max_s"] == 0.3
    assert per["contacts"]["within_bound"] is False
    assert per["contacts"]["verdict"] == "fail"
    # The first refusal at contacts came from the second probe; the slowest is the verdict's.
    assert per["contacts"]["refused_after_s"] == 0.5
    assert per["contacts"]["max_s"] == 7.39
    assert per["contacts"]["last_accepted_after_s"] == 6.0
    assert per["contacts"]["probe_statuses"] == {"200": 2, "503": 1, "401": 2}
    assert per["contacts"]["probe_log"][1] == _entry(0.3, 6.0, "200")
    assert [e["status"] for e in per["contacts"]["probe_log"]] == ["200", "200", "503", "401"]
    assert any(
        "contacts did not refuse the revoked key within 5s (probe saw 200 x2 0.20-6.00s, "
        "503 6.20s, 401 7.39s)" in reason
        for reason in report["reasons"]
    )
    assert report["revocation"]["admin_answered_after_s"] == 0.1
    table = format_report(report)
    assert "the admin API answered after 0.10s" in table
    assert "PROBE SAW" in table
    assert "LAST ACCEPTED" in table
    assert "200 x2 0.20-6.00s, 503 6.20s, 401 7.39s" in table
    assert "200 0.20s, 401 0.28s" in table
