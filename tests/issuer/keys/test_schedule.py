"""The rotation schedule with an injected clock: when successors are written, published and
sign; and the signing plan the key ring works out from a set of keys."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from issuer.keys import (
    KeyAdmin,
    KeyRecord,
    KeyRepository,
    KeyRing,
    KeySchedule,
    SigningPlan,
    rotation_due,
    signing_record,
)
from issuer.settings import IssuerSettings
from shared.clock import FakeClock
from shared.errors import ConfigurationError
from tests.issuer.keys.support import AHEAD, INTERVAL, make_repo, signing_kid


def test_next_key_is_published_at_least_max_age_plus_margin_before_it_signs() -> None:
    settings = IssuerSettings.from_env({"ISSUER_JWKS_MAX_AGE": "300"})
    assert settings.key_publish_ahead == 360  # default: max-age + 60 s margin
    schedule = KeySchedule.from_settings(settings)
    assert schedule.publish_ahead >= settings.jwks_max_age + 60
    drill = IssuerSettings.from_env({"ISSUER_JWKS_MAX_AGE": "2", "ISSUER_KEY_PUBLISH_AHEAD": "4"})
    assert drill.key_publish_ahead == 4
    with pytest.raises(ConfigurationError, match="ISSUER_KEY_PUBLISH_AHEAD"):
        IssuerSettings.from_env({"ISSUER_JWKS_MAX_AGE": "300", "ISSUER_KEY_PUBLISH_AHEAD": "10"})
    with pytest.raises(ConfigurationError, match="ISSUER_KEY_RETIRE_MARGIN"):
        IssuerSettings.from_env({"ISSUER_KEY_RETIRE_MARGIN": "soon"})


def test_scheduler_late_still_publishes_ahead(repo: KeyRepository, clock: FakeClock) -> None:
    """An issuer that was down past the rotation time never activates an unpublished key."""
    t0 = clock()
    repo.ensure_signing_key(t0)
    clock.advance(INTERVAL * 3)
    result = repo.schedule_next(clock())
    assert result is not None
    assert result.record.publish_at == clock()
    assert result.record.activate_at == clock() + AHEAD


def test_automatic_rotation_when_due(repo: KeyRepository, clock: FakeClock) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    created = admin.tick()
    assert created is not None
    assert admin.tick() is None  # the successor exists: nothing to do
    assert not rotation_due(repo.records(), clock(), repo.schedule)
    kids = [first.kid, created["kid"]]
    # Walk through three generations, ticking once a second around each change.
    for _generation in range(3):
        while signing_kid(repo, clock() + 7.0) == kids[-2]:
            clock.advance(7.0)
            assert admin.tick() is None  # not due while the successor is pending
        clock.advance(7.0)
        assert signing_kid(repo, clock()) == kids[-1]
        assert rotation_due(repo.records(), clock(), repo.schedule)
        created = admin.tick()
        assert created is not None
        kids.append(created["kid"])
    assert len(set(kids)) == len(kids) == 5
    records = {r.kid: r for r in repo.records()}
    activations = [records[k].activate_at for k in kids]
    assert [b - a for a, b in itertools.pairwise(activations)] == [INTERVAL] * 4
    for kid in kids[1:]:
        assert records[kid].activate_at - records[kid].publish_at >= AHEAD


def test_successor_is_written_create_lead_before_it_is_published(
    tmp_path: Path, clock: FakeClock
) -> None:
    """By default the scheduler writes the successor one JWKS max-age plus margin before its
    publish time, not at once: the key list stays short, and the change is still known to every
    process (and bounds every max-age) before it happens."""
    settings = IssuerSettings.from_env(
        {"ISSUER_JWKS_MAX_AGE": "30", "ISSUER_KEY_ROTATION_INTERVAL": "1000"}
    )
    schedule = KeySchedule.from_settings(settings)
    assert schedule.create_lead == 90
    repo = make_repo(tmp_path)
    repo.schedule = schedule
    ring = KeyRing(repo, jwks_max_age=30, clock=clock)
    first = repo.ensure_signing_key(clock())
    publish_at = first.activate_at + 1000 - schedule.publish_ahead
    clock.now = publish_at - 90 - 0.5
    assert repo.schedule_next(clock()) is None
    ring.reload()
    assert ring.jwks()[2] == 30  # nothing scheduled yet, and no max-age reaches publish_at
    clock.now = publish_at - 90
    result = repo.schedule_next(clock())
    assert result is not None
    assert result.record.publish_at == publish_at
    assert result.record.activate_at == first.activate_at + 1000


_TIMES = st.integers(min_value=0, max_value=12).map(float)


@st.composite
def _key_sets(draw: st.DrawFn) -> list[KeyRecord]:
    """Small sets of keys with times on a coarse grid, so ties between keys and between a key's
    own times (a key revoked the instant it activates, say) come up often."""
    records = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        publish = draw(_TIMES)
        records.append(
            KeyRecord(
                kid=f"k{i}",
                public_jwk={},
                created_at=0.0,
                publish_at=publish,
                activate_at=publish + draw(_TIMES),
                retire_at=draw(st.none() | _TIMES),
                remove_at=draw(st.none() | _TIMES),
                revoked_at=draw(st.none() | _TIMES),
            )
        )
    return records


@given(_key_sets(), _TIMES)
def test_signing_plan_names_the_signing_key_of_every_instant(
    records: list[KeyRecord], since: float
) -> None:
    """The plan the key ring works out at a reload answers, at any later instant, exactly what
    a pass over every key's state would (and, for an instant before it, what it did then)."""
    plan = SigningPlan.build(records, since)
    instants = sorted({since, *(t for r in records for t in r.change_times())})
    probes = {t + d for t in instants for d in (-0.5, 0.0, 0.5)} | {since + 100.0}
    for t in sorted(probes):
        expected = signing_record(records, max(t, since))
        assert plan.at(t) == expected, t
        if expected is not None:
            assert expected in plan.signing_keys(), t
