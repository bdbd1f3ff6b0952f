"""The report's time series: per-second buckets, key times and per-service marks, in seconds
since the load started."""

from __future__ import annotations

from drill.records import ProbeRun, Revocation, ServiceState, Timeline
from drill.series import timeline_section


def test_buckets_keys_and_marks_relative_to_the_start() -> None:
    timeline = Timeline(started=1000.0)
    for at in (1000.1, 1000.9, 1001.2, 1003.5):
        timeline.request(at)
    timeline.failure("photos: HTTP 503", 1001.5)
    timeline.expected_refusal(1003.6)
    timeline.request(999.0)  # before the start (a clock step): counted in second 0
    photos = ServiceState("photos", "http://p")
    photos.first_accept = {"k1": 1000.2, "k2": 1003.25}
    revocation = Revocation("user", "ada", 1002.0, 1002.1, 1022.0)
    revocation.runs["photos"] = ProbeRun(
        subscription="connected", probes=2, first_refusals=[1002.5, 1002.3]
    )
    keys = [
        {"kid": "k2", "publish_at": 1001.0, "activate_at": 1003.0, "retire_at": None,
         "revoked_at": 1004.0},
    ]  # fmt: skip
    section = timeline_section(
        timeline, duration=4.2, keys=keys, states=[photos], revocations=[revocation]
    )
    assert section["requests"] == [3, 1, 0, 1, 0]
    assert section["failures"] == {"photos: HTTP 503": [0, 1, 0, 0, 0]}
    assert section["expected_refusals"] == [0, 0, 0, 1, 0]
    assert section["keys"] == [
        {"kid": "k2", "publish_s": 1.0, "activate_s": 3.0, "retire_s": None, "revoke_s": 4.0}
    ]
    assert section["first_accept"] == {"photos": {"k1": 0.2, "k2": 3.25}}
    assert section["first_refusal"] == {"photos": [{"revocation": "user ada", "at_s": 2.3}]}
    assert section["actions"] == [{"kind": "user", "subject": "ada", "at_s": 2.0}]
