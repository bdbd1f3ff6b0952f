"""The JWKS cache's fetch plan on its own: pure, every call handed ``now`` (no client, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.jwks_schedule import RefreshSchedule
from shared.jwks_settings import JWKSClientSettings

ISSUER = "https://issuer.example"


def _schedule(**settings: Any) -> RefreshSchedule:
    return RefreshSchedule(JWKSClientSettings(issuer=ISSUER, **settings))


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("public, max-age=1", 30.0),  # clamped up to min_ttl
        ("public, max-age=999999", 3600.0),  # clamped down to max_ttl
        ('max-age="500"', 500.0),
        ("no-cache, max-age=500", 30.0),  # no-cache wins: min_ttl
        ("max-age=abc", 300.0),  # unreadable: default_ttl
        (None, 300.0),
    ],
)
def test_lifetime_from_cache_control(cache_control: str | None, ttl: float) -> None:
    assert _schedule().ttl(cache_control) == ttl


def test_a_fresh_schedule_is_due_at_once_and_may_fetch() -> None:
    schedule = _schedule()
    assert schedule.seconds_until_due(1000.0) == 0.0
    assert schedule.may_fetch(1000.0)


def test_after_a_success_the_refresh_is_planned_from_the_fetchs_start() -> None:
    schedule = _schedule(poll_interval=60.0, refresh_ahead=0.2)
    schedule.succeeded(started=1000.0, now=1005.0, cache_control="max-age=50")
    assert schedule.refresh_at == 1000.0 + 50 * 0.8  # ahead of expiry, under the poll
    schedule.succeeded(started=2000.0, now=2090.0, cache_control="max-age=3600")
    assert schedule.refresh_at == 2000.0 + 60.0  # the poll, already due when the answer came
    assert schedule.seconds_until_due(2090.0) == 0.0


def test_back_off_doubles_up_to_its_cap_and_never_past_a_poll() -> None:
    schedule = _schedule(retry_backoff=1.0, max_retry_backoff=10.0, poll_interval=6.0)
    waits = []
    for _ in range(5):
        schedule.failed(100.0)
        waits.append(schedule.refresh_at - 100.0)
        assert not schedule.may_fetch(100.0)
        assert schedule.retry_after(100.0) == int(waits[-1] + 0.999)
    assert waits == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert schedule.may_fetch(106.0)
    schedule.succeeded(started=106.0, now=106.0, cache_control=None)
    schedule.failed(200.0)
    assert schedule.refresh_at == 201.0  # a success starts the doubling again


def test_the_budget_counts_fetch_starts_in_the_last_minute() -> None:
    schedule = _schedule(max_fetches_per_minute=2)
    schedule.fetch_started(0.0)
    schedule.fetch_started(10.0)
    assert not schedule.budget_allows(59.0)
    assert not schedule.may_fetch(59.0)
    assert schedule.budget_allows(60.0)  # the first start left the window


def test_one_unknown_kid_fetch_per_cooldown() -> None:
    schedule = _schedule(unknown_kid_cooldown=30.0)
    assert schedule.may_fetch_unknown_kid(100.0)
    assert not schedule.may_fetch_unknown_kid(129.0)
    assert schedule.may_fetch_unknown_kid(130.0)


def test_no_unknown_kid_fetch_without_budget() -> None:
    schedule = _schedule(max_fetches_per_minute=1)
    schedule.fetch_started(100.0)
    assert not schedule.may_fetch_unknown_kid(100.0)
    assert schedule.may_fetch_unknown_kid(161.0)
