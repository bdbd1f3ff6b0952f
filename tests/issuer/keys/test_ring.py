"""The in-memory key ring with an injected clock: the JWKS it serves and the key it signs with."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from issuer.keys import KeyAdmin, KeyRecord, KeyRepository, KeyRing
from shared.clock import FakeClock
from shared.errors import ConfigurationError
from tests.issuer.conftest import App
from tests.issuer.keys.support import MARGIN, MAX_AGE, TTL, jwks_kids, signing_kid


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
        assert first.kid in jwks_kids(ring), step
    clock.now = rotated.activate_at + TTL + MARGIN
    ring.reload()
    assert jwks_kids(ring) == [rotated.kid]
    assert repo.get(first.kid).state(clock()) == "removed"


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
    assert nxt.kid in jwks_kids(ring)
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


class _Statements:
    """Every connection checked out of an engine's pool and every statement run on it, with the
    thread that did it."""

    def __init__(self, engine: Engine) -> None:
        self.threads: list[int] = []
        self._engine = engine
        event.listen(engine, "checkout", self._seen)
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.threads.append(threading.get_ident())

    def close(self) -> None:
        event.remove(self._engine, "checkout", self._seen)
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def statements(repo: KeyRepository) -> Iterator[_Statements]:
    seen = _Statements(repo.engine)
    yield seen
    seen.close()


def test_signer_finds_the_key_without_a_pass_over_the_keys(
    repo: KeyRepository, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signing key is worked out when the ring's keys change (each reload), not once per
    call: ``signer()`` runs on the event loop for every batch of tokens."""
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    first = repo.ensure_signing_key(clock())
    successor = repo.schedule_next(clock())
    assert successor is not None
    ring.reload()
    evaluated: list[str] = []
    state = KeyRecord.state

    def counted(self: KeyRecord, now: float) -> str:
        evaluated.append(self.kid)
        return state(self, now)

    monkeypatch.setattr(KeyRecord, "state", counted)
    for _ in range(100):
        assert ring.signer().kid == first.kid
    clock.now = successor.record.activate_at
    for _ in range(100):
        assert ring.signer().kid == successor.record.kid
    assert evaluated == []
    ring.reload()
    assert evaluated  # worked out again from the keys just read
    evaluated.clear()
    assert ring.signer().kid == successor.record.kid
    assert evaluated == []


def test_signer_never_touches_the_database(
    repo: KeyRepository, clock: FakeClock, statements: _Statements
) -> None:
    """A key that starts signing between two reloads was loaded at the first: ``signer()``
    answers from memory even when it was only scheduled (not yet published) at that reload."""
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    first = repo.ensure_signing_key(clock())
    successor = repo.schedule_next(clock())
    assert successor is not None
    ring.reload()
    assert successor.record.state(clock()) == "scheduled"
    first_removed = repo.get(first.kid).remove_at
    assert first_removed is not None
    statements.threads.clear()
    assert ring.signer().kid == first.kid
    clock.now = successor.record.activate_at
    assert ring.signer().kid == successor.record.kid
    clock.now = first_removed
    assert ring.signer().kid == successor.record.kid
    assert statements.threads == []


def test_signer_with_no_key_to_sign_raises_without_touching_the_database(
    repo: KeyRepository, clock: FakeClock, statements: _Statements
) -> None:
    """No key signs in the ring's view: ``signer()`` says so at once rather than heal from the
    database on the caller's thread (the event loop). The scheduler's tick makes sure a key
    signs, off the event loop, and the next reload picks it up."""
    ring = KeyRing(repo, jwks_max_age=MAX_AGE, clock=clock)
    ring.reload()  # an empty store
    statements.threads.clear()
    with pytest.raises(ConfigurationError, match="no signing key"):
        ring.signer()
    assert statements.threads == []
    assert repo.records() == []
    KeyAdmin(repo, clock=clock).tick()
    ring.reload()
    assert ring.signer().kid == signing_kid(repo, clock())


def test_healthz_reads_the_signer_without_database_work_on_the_event_loop(app: App) -> None:
    """Through the app: a key that starts signing between two reloads is served by ``/healthz``
    without any statement on the event loop's thread."""
    keyring = app.issuer.keyring
    now = app.clock()
    made = keyring.repo.create(now, publish_at=now + 100, activate_at=now + 200)
    keyring.reload()
    assert made.record.state(app.clock()) == "scheduled"
    portal = app.http.portal
    assert portal is not None
    loop_thread = portal.call(threading.get_ident)
    seen = _Statements(keyring.repo.engine)
    try:
        app.advance(200)
        response = app.http.get("/healthz")
    finally:
        seen.close()
    assert response.status_code == 200
    assert response.json()["signing_kid"] == made.record.kid
    assert loop_thread not in seen.threads
