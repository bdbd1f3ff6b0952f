"""The key repository: every change of which key signs is made once, however many processes
decide it at the same moment (separate engines on one database)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import issuer.keys.repository as repository
from issuer.db import key_rotations
from issuer.keys import KeyAdmin, KeyRecord, KeyRepository
from shared.clock import FakeClock
from shared.keys import generate_signing_key
from tests.issuer.keys.support import make_repo, signing_kid


@pytest.mark.parametrize("which", ["signing", "retired", "pending"])
def test_two_processes_revoking_one_key_at_once_record_one_revocation(
    tmp_path: Path, clock: FakeClock, which: str
) -> None:
    a = make_repo(tmp_path)
    b = make_repo(tmp_path)  # another process: its own engine on the same database
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

    def stale_records(self: KeyRepository) -> list[KeyRecord]:
        calls["n"] += 1
        return records if calls["n"] == 1 else real_records(self)

    assert KeyAdmin(a, clock=clock).revoke(kid)["already_revoked"] is False
    b.records = stale_records.__get__(b)  # type: ignore[method-assign]
    result = b.revoke(kid, clock())
    assert result.revoked is False
    assert result.record.revoked_at is not None


def test_concurrent_rotation_creates_exactly_one_key(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two schedulers (separate engines, one SQLite file) both decide a rotation is due; both
    generate a key; the database lets one of them in."""
    a = make_repo(tmp_path, "shared.db")
    b = make_repo(tmp_path, "shared.db")
    a.ensure_signing_key(clock())
    barrier = threading.Barrier(2, timeout=30)
    real = generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(repository, "generate_signing_key", generate_after_both_decided)
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
    a = make_repo(tmp_path, "shared.db")
    b = make_repo(tmp_path, "shared.db")
    first = a.ensure_signing_key(clock())
    barrier = threading.Barrier(2, timeout=30)
    real = generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(repository, "generate_signing_key", generate_after_both_decided)
    threads = [threading.Thread(target=r.revoke, args=(first.kid, clock())) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    records = a.records()
    assert len(records) == 2
    assert a.get(first.kid).state(clock()) == "revoked"
    assert signing_kid(a, clock()) != first.kid


def test_two_processes_starting_on_an_empty_database_create_one_key(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_repo(tmp_path, "shared.db")
    b = make_repo(tmp_path, "shared.db")
    barrier = threading.Barrier(2, timeout=30)
    real = generate_signing_key

    def generate_after_both_decided() -> Any:
        key = real()
        barrier.wait()
        return key

    monkeypatch.setattr(repository, "generate_signing_key", generate_after_both_decided)
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
