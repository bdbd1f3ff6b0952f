"""The failover scenario against the compose stack, run once and looked at by several tests.

While :mod:`compose_load` sends requests through HAProxy:

1. ``warm-up``: a few seconds of normal traffic;
2. ``replica-killed``: ``docker kill`` of issuer1; it stays dead for a while;
3. ``replica-back``: ``docker start`` of the same container, until HAProxy has taken it back;
4. ``database-down``: ``docker stop`` of PostgreSQL, until both replicas' /readyz say 503 and a
   moment longer;
5. ``database-back``: ``docker start`` of PostgreSQL, until both replicas are ready and a
   password or refresh grant through HAProxy has succeeded again (recovery);
6. ``after``: a few seconds of normal traffic.

Waits are polls with deadlines, and each phase lasts until the load has sent enough requests
in it (:func:`_traffic`), not a fixed time: a quiet machine gets through in seconds, a loaded
one takes as long as it needs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.compose_load import Load, Phase, report
from tests.e2e.compose_stack import ComposeStack

PHASES = ["warm-up", "replica-killed", "replica-back", "database-down", "database-back", "after"]
ISSUERS = ("issuer1", "issuer2")
HAPROXY_UP = "Server issuers/issuer1 is UP"
HAPROXY_DOWN = ("Server issuers/issuer1 is DOWN", "Server issuers/issuer1 is going DOWN")
# An HAProxy access-log line whose retry counter (act/fe/be/srv/retries) is not 0: a request
# that was sent again ("+" when to another server).
RETRIED = re.compile(r' \d+/\d+/\d+/\d+/\+?[1-9]\d* \d+/\d+ "')


@dataclass
class FailoverRun:
    load: Load
    notes: list[str] = field(default_factory=list)
    # /readyz bodies seen while the database was stopped, and once it was back
    readiness_down: dict[str, dict[str, Any]] = field(default_factory=dict)
    readiness_back: dict[str, dict[str, Any]] = field(default_factory=dict)
    recovery_seconds: float | None = None
    # issuer containers' (StartedAt, RestartCount) before the database stop and at the end
    issuers_before_db: dict[str, tuple[str, int]] = field(default_factory=dict)
    issuers_after: dict[str, tuple[str, int]] = field(default_factory=dict)
    # HAProxy's log lines of requests it sent again (no token in them: no bodies are logged)
    retried: list[str] = field(default_factory=list)
    report: str = ""


def _started(stack: ComposeStack) -> dict[str, tuple[str, int]]:
    out = {}
    for service in ISSUERS:
        data = stack.inspect(service)
        out[service] = (str(data["State"]["StartedAt"]), int(data["RestartCount"]))
    return out


def _poll(what: str, check: Any, deadline_s: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {deadline_s:g}s")
        time.sleep(every)


def _downs(log: str) -> int:
    return sum(log.count(line) for line in HAPROXY_DOWN)


def _traffic(load: Load, phase: str, count: int, *, since: float = 0.0) -> None:
    """Wait until the load has sent ``count`` requests in ``phase`` from ``since`` on (the
    phase's requests are what its tests judge; each kind of request goes on meanwhile)."""
    _poll(
        f"{count} requests in {phase}",
        lambda: sum(o.at >= since for o in load.in_phases(phase)) >= count,
        deadline_s=60,
        every=0.1,
    )


def _token(stack: ComposeStack, credentials: dict[str, str], audience: str) -> str:
    with stack.client() as http:
        resp = http.post(
            f"{stack.issuer}/token",
            data={"grant_type": "client_credentials", "audience": audience},
            auth=(credentials["client_id"], credentials["client_secret"]),
        )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def run_failover(stack: ComposeStack) -> FailoverRun:
    credentials = stack.credentials()
    phase = Phase(PHASES[0])
    load = Load(
        issuer=stack.issuer,
        photos=stack.photos,
        contacts=stack.contacts,
        credentials=credentials,
        phase=phase,
        client=stack.client,
    )
    run = FailoverRun(load)
    photos_token = _token(stack, credentials, "photos")
    contacts_token = _token(stack, credentials, "contacts")
    started = time.monotonic()

    def note(text: str) -> None:
        run.notes.append(f"  {time.monotonic() - started:5.1f}s  {text}")

    load.start(photos_token=photos_token, contacts_token=contacts_token)
    try:
        _traffic(load, "warm-up", 40)

        phase.set("replica-killed")
        issuer1 = stack.container("issuer1")
        haproxy_log = stack.logs("haproxy", tail=100000)
        ups_before, downs_before = haproxy_log.count(HAPROXY_UP), _downs(haproxy_log)
        stack.docker("kill", issuer1)
        note("docker kill issuer1")
        # Dead until HAProxy has taken it out (a refused connection or two failed checks) and
        # the load has gone on without it.
        _poll(
            "HAProxy takes issuer1 out",
            lambda: _downs(stack.logs("haproxy", tail=100000)) > downs_before,
            deadline_s=30,
            every=0.5,
        )
        note("HAProxy: issuer1 is DOWN")
        _traffic(load, "replica-killed", 60, since=time.monotonic())

        stack.docker("start", issuer1)
        phase.set("replica-back")
        note("docker start issuer1")
        stack.wait_readyz("issuer1", 200, deadline_s=90)
        note("issuer1 /readyz 200")
        _poll(
            "HAProxy takes issuer1 back",
            lambda: stack.logs("haproxy", tail=100000).count(HAPROXY_UP) > ups_before,
            deadline_s=30,
            every=0.5,
        )
        note("HAProxy: issuer1 is UP")
        _traffic(load, "replica-back", 40, since=time.monotonic())

        run.issuers_before_db = _started(stack)
        phase.set("database-down")
        postgres = stack.container("postgres")
        stack.docker("stop", postgres)
        note("docker stop postgres")
        for service in ISSUERS:
            run.readiness_down[service] = stack.wait_readyz(service, 503, deadline_s=30)
        note("both replicas' /readyz 503")
        _traffic(load, "database-down", 20, since=time.monotonic())

        stack.docker("start", postgres)
        db_started = time.monotonic()
        phase.set("database-back")
        note("docker start postgres")
        for service in ISSUERS:
            run.readiness_back[service] = stack.wait_readyz(service, 200, deadline_s=60)
        note("both replicas' /readyz 200")

        def first_grant() -> float | None:
            for o in load.in_phases("database-back"):
                if o.ok and o.kind in ("password", "refresh") and o.at >= db_started:
                    return o.at
            return None

        recovered_at = _poll("a password or refresh grant succeeds", first_grant, 60)
        run.recovery_seconds = recovered_at - db_started
        note(f"first password/refresh grant answered 200 {run.recovery_seconds:.1f}s after start")
        _traffic(load, "database-back", 20, since=time.monotonic())

        phase.set("after")
        _poll(
            "every refresh chain refreshed after the outage",
            lambda: all(c.refreshes_by_phase["after"] >= 2 for c in load.chains),
            deadline_s=60,
            every=0.1,
        )
        _traffic(load, "after", 60)
    finally:
        load.stop()
        note("load stopped")
    run.issuers_after = _started(stack)
    log = stack.logs("haproxy", tail=100000).splitlines()
    lines = [line.split("| ", 1)[-1] for line in log]
    run.retried = [line for line in lines if RETRIED.search(line)]
    states = [line[:160] for line in lines if line.startswith("Server issuers/")]
    extra = [
        "  HAProxy's replica states:",
        *states,
        f"  HAProxy sent {len(run.retried)} requests again:",
        *run.retried[:20],
    ]
    run.report = report(load, PHASES, [*run.notes, *extra])
    return run
