"""issuer.container: building and closing the issuer, and its key-reload loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from issuer.container import build_issuer, close_issuer, reload_keys_forever
from shared.clock import FakeClock
from tests.issuer.conftest import settings_for


class _Stop(Exception):
    pass


def test_the_reload_loop_logs_a_failure_with_its_message_and_traceback(
    issuer_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real database failure (the key table gone) on every tick: both steps log it with the
    database's own message and the traceback, and the loop carries on to the next tick."""
    issuer = build_issuer(settings_for(issuer_database_url), clock=FakeClock())
    try:
        with issuer.keyring.repo.engine.begin() as conn:
            conn.execute(text("ALTER TABLE signing_keys RENAME TO signing_keys_gone"))
        ticks: list[float] = []

        async def sleep(seconds: float) -> None:
            ticks.append(seconds)
            if len(ticks) > 2:
                raise _Stop

        with pytest.raises(_Stop):
            asyncio.run(reload_keys_forever(issuer, sleep=sleep))
    finally:
        close_issuer(issuer)
    assert ticks == [issuer.settings.key_refresh_interval] * 3  # kept going after failures
    failures = [r for r in caplog.records if r.name == "keyhouse.issuer"]
    assert [r.getMessage() for r in failures] == [
        "key rotation scheduler failed",
        "reloading signing keys failed",
    ] * 2
    for record in failures:
        assert record.levelno == logging.WARNING
        assert record.exc_info is not None  # logged with its traceback
        assert "signing_keys" in str(record.exc_info[1])  # the database's message
    formatted = caplog.text
    assert formatted.count("Traceback (most recent call last)") >= 4
    assert "signing_keys" in formatted  # the message reaches the log, not just the class name


def test_the_reload_loop_logs_a_database_outage_once_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that cannot be opened, tick after tick (the SQLite file moved away and a
    directory in its place: a real failure even for root), is one warning for the whole outage
    and no traceback; once it is back, one info line."""
    db = tmp_path / "issuer.db"
    issuer = build_issuer(settings_for(f"sqlite:///{db}"), clock=FakeClock())
    ticks: list[float] = []

    async def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 2:  # the database goes away: no connection can be opened
            issuer.keyring.repo.engine.dispose()
            db.rename(tmp_path / "moved.db")
            db.mkdir()
        if len(ticks) == 6:  # and comes back
            db.rmdir()
            (tmp_path / "moved.db").rename(db)
        if len(ticks) > 7:
            raise _Stop

    try:
        with caplog.at_level(logging.INFO, logger="keyhouse.issuer"), pytest.raises(_Stop):
            asyncio.run(reload_keys_forever(issuer, sleep=sleep))
    finally:
        close_issuer(issuer)
    records = [r for r in caplog.records if r.name == "keyhouse.issuer"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"], [r.getMessage() for r in records]
    assert records[0].getMessage().startswith("database unavailable: unable to open database file")
    assert records[1].getMessage().startswith("database reachable again after")
    assert all(r.exc_info is None for r in records)
