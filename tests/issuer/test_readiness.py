"""``/readyz`` (readiness) apart from ``/healthz`` (liveness), and the logic behind it
(issuer/readiness.py): a signing key and a database that answers, checked at most once a
second, never waited on for long."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from issuer.engines import make_probe_engine
from issuer.outage import DatabaseOutage
from issuer.readiness import Readiness, select_one
from shared.errors import ConfigurationError
from tests.issuer.conftest import App


def test_readyz_is_200_ready_and_healthz_keeps_its_body(app: App) -> None:
    response = app.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    assert response.headers["cache-control"] == "no-store"
    head = app.http.head("/readyz")
    assert head.status_code == 200
    assert head.content == b""
    health = app.http.get("/healthz").json()
    assert set(health) == {"status", "issuer", "signing_kid"}
    assert health["status"] == "ok"
    assert app.http.head("/healthz").status_code == 200


def test_readyz_answers_only_get_and_head(app: App) -> None:
    assert app.http.post("/readyz").status_code == 405


def _kid() -> str:
    return "kid-1"


class CountingProbe:
    """A real probe (SELECT 1 on a real SQLite file) that counts its runs and can be held."""

    def __init__(self, path: Path) -> None:
        self.engine = make_probe_engine(f"sqlite:///{path}")
        self.runs = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> None:
        self.runs += 1
        self.release.wait(30)
        select_one(self.engine)()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    import sqlite3

    path = tmp_path / "issuer.db"
    sqlite3.connect(path).close()
    return path


def test_a_flood_of_probes_costs_one_query_per_second(sqlite_file: Path) -> None:
    now = [100.0]
    probe = CountingProbe(sqlite_file)
    readiness = Readiness(probe, _kid, DatabaseOutage(retry_after=5), monotonic=lambda: now[0])

    async def flood() -> list[str | None]:
        return list(await asyncio.gather(*(readiness.reason() for _ in range(50))))

    assert asyncio.run(flood()) == [None] * 50
    assert probe.runs == 1
    now[0] += 0.5
    assert asyncio.run(flood()) == [None] * 50
    assert probe.runs == 1  # still within the second
    now[0] += 0.6
    assert asyncio.run(flood()) == [None] * 50
    assert probe.runs == 2
    probe.engine.dispose()


def test_an_unreachable_database_is_not_ready_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A SQLite file that does not exist: the probe never creates one, it fails to open it.
    engine = make_probe_engine(f"sqlite:///{tmp_path}/missing/issuer.db")
    now = [0.0]
    outage = DatabaseOutage(retry_after=5)
    readiness = Readiness(select_one(engine), _kid, outage, monotonic=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="keyhouse.issuer"):
        for _ in range(3):
            reason = asyncio.run(readiness.reason())
            assert reason == "database unavailable: unable to open database file"
            now[0] += 2
    assert outage.down
    assert not (tmp_path / "missing").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "database unavailable" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    engine.dispose()


def test_no_signing_key_is_not_ready(sqlite_file: Path) -> None:
    def no_key() -> str:
        raise ConfigurationError("no signing key is available")

    probe = CountingProbe(sqlite_file)
    readiness = Readiness(probe, no_key, DatabaseOutage(retry_after=5))
    assert asyncio.run(readiness.reason()) == "no signing key is available"
    probe.engine.dispose()


def test_a_probe_that_hangs_is_not_ready_and_is_not_started_twice(sqlite_file: Path) -> None:
    probe = CountingProbe(sqlite_file)
    probe.release.clear()
    readiness = Readiness(probe, _kid, DatabaseOutage(retry_after=5), wait_seconds=0.05)

    async def scenario() -> tuple[str | None, str | None, str | None]:
        first = await readiness.reason()
        second = await readiness.reason()  # joins the same check
        probe.release.set()
        for _ in range(200):  # the held check finishes; poll until its result is in
            third = await readiness.reason()
            if third is None:
                break
            await asyncio.sleep(0.01)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first == second == "the database did not answer within 0.05 s"
    assert third is None
    assert probe.runs == 1
    probe.engine.dispose()
