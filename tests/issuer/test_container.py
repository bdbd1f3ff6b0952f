"""issuer.container: building and closing the issuer, and its key-reload loop."""

from __future__ import annotations

import asyncio
import logging

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
