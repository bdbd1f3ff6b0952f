"""The key lifecycle with an injected clock: states are functions of stored times; no sleeps."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import issuer.keystore as keystore
from issuer.admin import KeyAdmin
from issuer.db import audit_events, init_schema, key_rotations, make_engine
from issuer.keystore import (
    KeyRepository,
    KeyRing,
    KeySchedule,
    published_records,
    rotation_due,
    signing_record,
)
from issuer.sealing import KeySealer
from issuer.settings import IssuerSettings
from shared.clock import FakeClock
from shared.errors import ConfigurationError, NotFound

INTERVAL = 1000.0
AHEAD = 100.0
TTL = 50.0
MARGIN = 10.0
MAX_AGE = 30


def _repo(tmp_path: Path, name: str = "keys.db") -> KeyRepository:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    init_schema(engine)
    schedule = KeySchedule(
        rotation_interval=INTERVAL,
        publish_ahead=AHEAD,
        access_token_ttl=TTL,
        retire_margin=MARGIN,
        create_lead=INTERVAL,  # successors are written at once; see the create_lead test
    )
    return KeyRepository(
        engine, KeySealer("a-test-secret-0123456789"), access_token_ttl=int(TTL), schedule=schedule
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def repo(tmp_path: Path) -> KeyRepository:
    return _repo(tmp_path)


def _signing_kid(repo: KeyRepository, now: float) -> str:
    record = signing_record(repo.records(), now)
    assert record is not None
    return record.kid


def _published(repo: KeyRepository, now: float) -> list[str]:
    return [r.kid for r in published_records(repo.records(), now)]


def _jwks_kids(ring: KeyRing) -> list[str]:
    body, _etag, _max_age = ring.jwks()
    return [k["kid"] for k in json.loads(body)["keys"]]


def test_states_follow_the_stored_times(repo: KeyRepository, clock: FakeClock) -> None:
    t0 = clock()
    first = repo.ensure_signing_key(t0)
    assert first.state(t0) == "active"
    # The scheduler gives the first key a successor on the schedule.
    result = repo.schedule_next(t0)
    assert result is not None
    assert result.created
    nxt = result.record
    assert nxt.publish_at == t0 + INTERVAL - AHEAD
    assert nxt.activate_at == t0 + INTERVAL
    first = repo.get(first.kid)
    assert first.retire_at == t0 + INTERVAL
    assert first.remove_at == t0 + INTERVAL + TTL + MARGIN

    expected = [
        (t0, "active", "scheduled"),
        (t0 + INTERVAL - AHEAD - 1, "active", "scheduled"),
        (t0 + INTERVAL - AHEAD, "active", "published"),
        (t0 + INTERVAL - 0.001, "active", "published"),
        (t0 + INTERVAL, "retired", "active"),
        (t0 + INTERVAL + TTL + MARGIN - 0.001, "retired", "active"),
        (t0 + INTERVAL + TTL + MARGIN, "removed", "active"),
    ]
    for at, old_state, new_state in expected:
        assert (first.state(at), nxt.state(at)) == (old_state, new_state), at
        signer = first.kid if old_state == "active" else nxt.kid
        assert _signing_kid(repo, at) == signer
        published = _published(repo, at)
        assert (first.kid in published) == (old_state in {"active", "retired"})
        assert (nxt.kid in published) == (new_state in {"published", "active"})


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
        while _signing_kid(repo, clock() + 7.0) == kids[-2]:
            clock.advance(7.0)
            assert admin.tick() is None  # not due while the successor is pending
        clock.advance(7.0)
        assert _signing_kid(repo, clock()) == kids[-1]
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
    repo = _repo(tmp_path)
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


def test_retired_key_stays_until_its_tokens_expire(repo: KeyRepository, clock: FakeClock) -> None:
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    first = repo.ensure_signing_key(clock())
    ring.reload()
    rotated = repo.rotate(clock(), immediate=True).record
    ring.reload()
    assert ring.signer().kid == rotated.kid
    # A token signed by ``first`` a moment before the rotation expires at t + TTL; verifiers
    # accept it up to their leeway later, so the key stays published TTL + margin.
    for step in (1.0, TTL - 1, TTL + MARGIN - 2):
        clock.now = rotated.activate_at + step
        assert first.kid in _jwks_kids(ring), step
    clock.now = rotated.activate_at + TTL + MARGIN
    ring.reload()
    assert _jwks_kids(ring) == [rotated.kid]
    assert repo.get(first.kid).state(clock()) == "removed"


def test_planned_rotate_publishes_now_and_signs_after_publish_ahead(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    admin.tick()  # a successor is scheduled far ahead: rotate brings that one forward
    scheduled = next(r for r in repo.records() if r.kid != first.kid)
    assert scheduled.state(clock()) == "scheduled"

    clock.advance(5)
    out = admin.rotate()
    assert out["kid"] == scheduled.kid
    assert out["created"] is True  # this call brought it into the JWKS
    assert out["previous_kid"] == first.kid
    assert out["publish_at"] == clock()
    assert out["activate_at"] == clock() + AHEAD
    assert out["state"] == "published"
    assert _published(repo, clock()) == [first.kid, scheduled.kid]
    assert _signing_kid(repo, clock() + AHEAD - 0.01) == first.kid
    assert _signing_kid(repo, clock() + AHEAD) == scheduled.kid

    # Rotating again while that rotation is pending does not create another key.
    again = admin.rotate()
    assert again["kid"] == scheduled.kid
    assert again["created"] is False
    assert len(repo.records()) == 2
    # --now switches at once, using the key already published.
    now = admin.rotate(now=True)
    assert now["kid"] == scheduled.kid
    assert now["activate_at"] == clock()
    assert _signing_kid(repo, clock()) == scheduled.kid
    assert repo.get(first.kid).retire_at == clock()


def test_rotate_without_a_scheduled_successor_creates_one(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    out = admin.rotate(now=True)
    assert out["created"] is True
    assert out["kid"] != first.kid
    assert _signing_kid(repo, clock()) == out["kid"]
    assert repo.get(first.kid).state(clock()) == "retired"


def test_jwks_max_age_never_outlives_the_next_change(repo: KeyRepository, clock: FakeClock) -> None:
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    repo.ensure_signing_key(clock())
    repo.schedule_next(clock())
    ring.reload()
    nxt = next(r for r in repo.records() if r.state(clock()) == "scheduled")
    assert ring.jwks()[2] == MAX_AGE
    for before in (MAX_AGE + 5, MAX_AGE, 12.5, 1, 0.5):
        clock.now = nxt.publish_at - before
        _body, _etag, max_age = ring.jwks()
        assert max_age <= before
        assert max_age == min(MAX_AGE, int(before))
    clock.now = nxt.publish_at
    assert nxt.kid in _jwks_kids(ring)
    clock.now = nxt.activate_at - 3
    assert ring.jwks()[2] == 3
    # Property: at any instant, a cache held for max-age sees no change of the set.
    t = nxt.publish_at - 2 * MAX_AGE
    while t < nxt.activate_at + TTL + MARGIN + 5:
        clock.now = t
        kids, _etag, max_age = ring.jwks()
        clock.now = t + max_age - 0.001
        assert ring.jwks()[0] == kids, t
        t += 3.7


def test_revoke_signing_key_unpublishes_and_a_fresh_key_signs(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    first = repo.ensure_signing_key(clock())
    admin.tick()
    ring.reload()
    scheduled = next(r for r in repo.records() if r.kid != first.kid)
    clock.advance(10)
    out = admin.revoke(first.kid)
    assert out["state"] == "revoked"
    assert out["revoked_at"] == clock()
    fresh = out["signing_kid"]
    assert fresh not in {first.kid, scheduled.kid}
    ring.reload()
    assert first.kid not in _jwks_kids(ring)
    assert fresh in _jwks_kids(ring)
    assert ring.signer().kid == fresh
    # The replacement takes the revoked key's place: the scheduled successor still follows.
    replacement = repo.get(fresh)
    assert replacement.retire_at == scheduled.activate_at
    assert _signing_kid(repo, scheduled.activate_at) == scheduled.kid
    assert admin.tick() is None
    assert out["already_revoked"] is False
    # Revoking twice changes nothing, says so, and records no second audit event.
    clock.advance(5)
    again = admin.revoke(first.kid)
    assert again["already_revoked"] is True
    assert again["revoked_at"] == out["revoked_at"]
    assert again["signing_kid"] == fresh
    assert _key_revoked_events(repo) == [f"kid={first.kid}"]
    with pytest.raises(NotFound):
        admin.revoke("no-such-kid")


def _key_revoked_events(repo: KeyRepository) -> list[str]:
    with repo.engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_events.c.detail).where(audit_events.c.event == "key_revoked")
            ).scalars()
        )


@pytest.mark.parametrize("which", ["signing", "retired", "pending"])
def test_two_processes_revoking_one_key_at_once_record_one_revocation(
    tmp_path: Path, clock: FakeClock, which: str
) -> None:
    a = _repo(tmp_path)
    b = _repo(tmp_path)  # another process: its own engine on the same database
    first = a.ensure_signing_key(clock())
    clock.advance(1)
    if which == "retired":
        KeyAdmin(a, clock=clock).rotate(now=True)
        kid = first.kid
    elif which == "pending":
        kid = KeyAdmin(a, clock=clock).rotate()["kid"]
    else:
        kid = first.kid
    # Both read the key as unrevoked, then both revoke it.
    records = a.records()
    real_records = KeyRepository.records
    calls = {"n": 0}

    def stale_records(self: KeyRepository) -> list[keystore.KeyRecord]:
        calls["n"] += 1
        return records if calls["n"] == 1 else real_records(self)

    assert KeyAdmin(a, clock=clock).revoke(kid)["already_revoked"] is False
    b.records = stale_records.__get__(b)  # type: ignore[method-assign]
    result = b.revoke(kid, clock())
    assert result.revoked is False
    assert result.record.revoked_at is not None


def test_revoke_non_signing_keys(repo: KeyRepository, clock: FakeClock) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    # A retired key: unpublished at once, signing unaffected.
    clock.advance(1)
    second = admin.rotate(now=True)["kid"]
    assert _published(repo, clock()) == [first.kid, second]
    admin.revoke(first.kid)
    assert _published(repo, clock()) == [second]
    assert _signing_kid(repo, clock()) == second
    # A published successor, not yet signing: unpublished, and the current key keeps signing
    # past the time it would have retired; the scheduler then plans a new successor.
    clock.advance(1)
    pending = admin.rotate()
    assert pending["state"] == "published"
    assert repo.get(second).retire_at == pending["activate_at"]
    admin.revoke(pending["kid"])
    assert _published(repo, clock()) == [second]
    restored = repo.get(second)
    assert restored.retire_at is None
    assert restored.remove_at is None
    assert _signing_kid(repo, pending["activate_at"] + 1) == second
    created = admin.tick()
    assert created is not None
    assert created["kid"] not in {first.kid, second, pending["kid"]}


def test_concurrent_rotation_creates_exactly_one_key(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two schedulers (separate engines, one SQLite file) both decide a rotation is due; both
    generate a key; the database lets one of them in."""
    a = _repo(tmp_path, "shared.db")
    b = _repo(tmp_path, "shared.db")
    a.ensure_signing_key(clock())
    barrier = threading.Barrier(2, timeout=30)
    real = keystore.generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(keystore, "generate_signing_key", generate_after_both_decided)
    results: list[Any] = []

    def tick(repo: KeyRepository) -> None:
        results.append(repo.schedule_next(clock()))

    threads = [threading.Thread(target=tick, args=(r,)) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].record.kid == results[1].record.kid
    assert len(a.records()) == 2
    with a.engine.connect() as conn:
        slots = conn.execute(select(key_rotations)).mappings().all()
    assert [s["kid"] for s in slots if s["slot"].startswith("rotate:")] == [results[0].record.kid]


def test_concurrent_revocation_creates_one_replacement(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _repo(tmp_path, "shared.db")
    b = _repo(tmp_path, "shared.db")
    first = a.ensure_signing_key(clock())
    barrier = threading.Barrier(2, timeout=30)
    real = keystore.generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(keystore, "generate_signing_key", generate_after_both_decided)
    threads = [threading.Thread(target=r.revoke, args=(first.kid, clock())) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    records = a.records()
    assert len(records) == 2
    assert a.get(first.kid).state(clock()) == "revoked"
    assert _signing_kid(a, clock()) != first.kid


def test_two_processes_starting_on_an_empty_database_create_one_key(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _repo(tmp_path, "shared.db")
    b = _repo(tmp_path, "shared.db")
    barrier = threading.Barrier(2, timeout=30)
    real = keystore.generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(keystore, "generate_signing_key", generate_after_both_decided)
    kids: list[str] = []
    threads = [
        threading.Thread(target=lambda r=r: kids.append(r.ensure_signing_key(clock()).kid))
        for r in (a, b)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(a.records()) == 1
    assert kids[0] == kids[1]
