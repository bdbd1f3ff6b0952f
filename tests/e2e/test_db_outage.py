"""A PostgreSQL outage under a running issuer process, with a real server stopped and started.

While the database is down, every endpoint that needs it answers 503 ``temporarily_unavailable``
with ``Retry-After`` and ``Cache-Control: no-store`` (never 500), ``/readyz`` says 503 and why,
``/healthz`` stays 200, and the log holds one warning for the whole outage and no traceback.
Once the same server is back (same port, same data), the same issuer process answers again
within a deadline: its pool replaces the dropped connections by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.pg_fixture import unavailable
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.processes import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "correct horse battery"
RETRY_AFTER = "7"
DEADLINE_S = 60.0
WARNING = "database unavailable:"
RECOVERED = "database reachable again"


@dataclass
class Outage:
    pg: PostgresServer
    stack: Stack
    issuer: Server
    client: dict[str, Any]


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    # A server of its own: this test stops it, and others share the session's.
    try:
        pg = PostgresServer()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    with pg:
        stack = Stack(tmp_path, database_url=pg.url)
        try:
            issuer = stack.issuer(ISSUER_RETRY_AFTER=RETRY_AFTER).start()
            client = stack.create_client(
                scope="photos:read issuer:admin",
                audiences=["photos", "issuer"],
                grants=["client_credentials", "password", "refresh_token"],
            )
            stack.create_user("alice", PASSWORD, "photos:read")
            yield Outage(pg, stack, issuer, client)
        finally:
            stack.stop_all()


def _post(o: Outage, path: str, **form: str) -> httpx.Response:
    auth = (o.client["client_id"], o.client["client_secret"])
    return web.post(o.issuer.url + path, data=form, auth=auth, timeout=30)


def _poll(what: str, attempt: Callable[[], httpx.Response], done: Callable[[int], bool]) -> None:
    """Repeat ``attempt`` until ``done(status)``; every answer meanwhile is 200 or 503."""
    deadline = time.monotonic() + DEADLINE_S
    seen: list[int] = []
    while time.monotonic() < deadline:
        response = attempt()
        seen.append(response.status_code)
        assert response.status_code in (200, 503), (what, response.status_code, response.text)
        if done(response.status_code):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {DEADLINE_S:g} s; statuses seen: {seen[-20:]}")


def _assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text)
    assert response.json()["error"] == "temporarily_unavailable", (what, response.text)
    assert response.headers["retry-after"] == RETRY_AFTER, what
    assert response.headers["cache-control"] == "no-store", what


def test_an_outage_is_503_temporarily_unavailable_then_recovers_without_restart(
    outage: Outage,
) -> None:
    o = outage
    pid = o.issuer.proc.pid if o.issuer.proc else None
    admin = _post(o, "/token", grant_type="client_credentials", audience="issuer").json()
    login = _post(
        o, "/token", grant_type="password", username="alice", password=PASSWORD, audience="photos"
    )
    assert login.status_code == 200, login.text
    access, refresh = login.json()["access_token"], login.json()["refresh_token"]
    bearer = {"Authorization": f"Bearer {admin['access_token']}"}
    assert web.get(o.issuer.url + "/readyz", timeout=10).status_code == 200

    o.pg.pause()  # a normal shutdown: sessions are ended, then the server is gone

    # The client record is remembered for a couple of seconds: poll until a request needs the
    # database (every answer meanwhile is a success or the 503, never a 500).
    _poll(
        "client_credentials while the database is down",
        lambda: _post(o, "/token", grant_type="client_credentials", audience="photos"),
        lambda status: status == 503,
    )
    calls: dict[str, Callable[[], httpx.Response]] = {
        "client_credentials": lambda: _post(
            o, "/token", grant_type="client_credentials", audience="photos"
        ),
        "password": lambda: _post(
            o,
            "/token",
            grant_type="password",
            username="alice",
            password=PASSWORD,
            audience="photos",
        ),
        "refresh_token": lambda: _post(
            o, "/token", grant_type="refresh_token", refresh_token=refresh
        ),
        "revoke": lambda: _post(o, "/revoke", token=refresh),
        "introspect": lambda: _post(o, "/introspect", token=access),
        "admin keys": lambda: web.get(o.issuer.url + "/admin/keys", headers=bearer, timeout=30),
    }
    for _round in range(3):  # many requests, still one warning
        for what, call in calls.items():
            _assert_unavailable(call(), what)
    _poll(
        "/readyz 503",
        lambda: web.get(o.issuer.url + "/readyz", timeout=10),
        lambda status: status == 503,
    )
    not_ready = web.get(o.issuer.url + "/readyz", timeout=10)
    assert not_ready.json()["status"] == "unavailable"
    assert not_ready.json()["reason"].startswith("database unavailable: "), not_ready.text
    assert o.pg.password not in not_ready.text
    assert not_ready.headers["cache-control"] == "no-store"
    assert web.get(o.issuer.url + "/healthz", timeout=10).status_code == 200

    log = o.issuer.logs()
    assert log.count(WARNING) == 1, log
    assert "Traceback" not in log, log
    assert o.pg.password not in log

    o.pg.resume()  # the same server: same port, same data

    _poll(
        "client_credentials after the database is back",
        lambda: _post(o, "/token", grant_type="client_credentials", audience="photos"),
        lambda status: status == 200,
    )
    _poll(
        "/readyz after the database is back",
        lambda: web.get(o.issuer.url + "/readyz", timeout=10),
        lambda status: status == 200,
    )
    for what in ("password", "refresh_token", "introspect", "admin keys", "revoke"):
        response = calls[what]()
        assert response.status_code == 200, (what, response.text)
    assert o.issuer.proc is not None
    assert o.issuer.proc.poll() is None
    assert o.issuer.proc.pid == pid  # the same process throughout
    log = o.issuer.logs()
    assert log.count(WARNING) == 1, log
    assert RECOVERED in log, log
    assert "Traceback" not in log, log
