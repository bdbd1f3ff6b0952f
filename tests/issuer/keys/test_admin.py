"""Key administration (the admin API's and the CLI's one code path): rotate and revoke."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from issuer.db import audit_events
from issuer.keys import KeyAdmin, KeyRepository, KeyRing
from shared.clock import FakeClock
from shared.errors import NotFound
from tests.issuer.keys.support import AHEAD, MAX_AGE, jwks_kids, published_kids, signing_kid


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
    assert published_kids(repo, clock()) == [first.kid, scheduled.kid]
    assert signing_kid(repo, clock() + AHEAD - 0.01) == first.kid
    assert signing_kid(repo, clock() + AHEAD) == scheduled.kid

    # Rotating again while that rotation is pending does not create another key.
    again = admin.rotate()
    assert again["kid"] == scheduled.kid
    assert again["created"] is False
    assert len(repo.records()) == 2
    # --now switches at once, using the key already published.
    now = admin.rotate(now=True)
    assert now["kid"] == scheduled.kid
    assert now["activate_at"] == clock()
    assert signing_kid(repo, clock()) == scheduled.kid
    assert repo.get(first.kid).retire_at == clock()


def test_rotate_without_a_scheduled_successor_creates_one(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    out = admin.rotate(now=True)
    assert out["created"] is True
    assert out["kid"] != first.kid
    assert signing_kid(repo, clock()) == out["kid"]
    assert repo.get(first.kid).state(clock()) == "retired"


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
    assert first.kid not in jwks_kids(ring)
    assert fresh in jwks_kids(ring)
    assert ring.signer().kid == fresh
    # The replacement takes the revoked key's place: the scheduled successor still follows.
    replacement = repo.get(fresh)
    assert replacement.retire_at == scheduled.activate_at
    assert signing_kid(repo, scheduled.activate_at) == scheduled.kid
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


def test_revoke_non_signing_keys(repo: KeyRepository, clock: FakeClock) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    # A retired key: unpublished at once, signing unaffected.
    clock.advance(1)
    second = admin.rotate(now=True)["kid"]
    assert published_kids(repo, clock()) == [first.kid, second]
    admin.revoke(first.kid)
    assert published_kids(repo, clock()) == [second]
    assert signing_kid(repo, clock()) == second
    # A published successor, not yet signing: unpublished, and the current key keeps signing
    # past the time it would have retired; the scheduler then plans a new successor.
    clock.advance(1)
    pending = admin.rotate()
    assert pending["state"] == "published"
    assert repo.get(second).retire_at == pending["activate_at"]
    admin.revoke(pending["kid"])
    assert published_kids(repo, clock()) == [second]
    restored = repo.get(second)
    assert restored.retire_at is None
    assert restored.remove_at is None
    assert signing_kid(repo, pending["activate_at"] + 1) == second
    created = admin.tick()
    assert created is not None
    assert created["kid"] not in {first.kid, second, pending["kid"]}


def test_revoking_the_signing_key_uses_the_prepared_spare(
    repo: KeyRepository, clock: FakeClock
) -> None:
    """The spare made ahead replaces the revoked signing key (no key generation while the
    revocation waits), and the next spare is prepared once it is used."""
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    admin._make_spare()  # what prepare_spare's background thread runs
    spare = admin._spare
    assert spare is not None
    out = admin.revoke(first.kid)
    assert out["signing_kid"] == spare.kid
    assert admin._spare is not spare
    assert admin._spare is not None or admin._spare_wanted  # the next one is on its way


def test_revoking_without_a_spare_generates_the_replacement(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    out = admin.revoke(first.kid)
    assert out["signing_kid"] not in (None, first.kid)
    assert admin._spare is None  # the CLI's path makes none
    assert not admin._spare_wanted


def test_revoking_a_key_that_does_not_sign_leaves_the_spare(
    repo: KeyRepository, clock: FakeClock
) -> None:
    admin = KeyAdmin(repo, clock=clock)
    repo.ensure_signing_key(clock())
    pending = admin.rotate()["kid"]
    admin._make_spare()
    spare = admin._spare
    admin.revoke(pending)
    assert admin._spare is spare


@pytest.mark.parametrize("which", ["signing", "pending", "retired"])
def test_the_revocation_hook_runs_in_the_revoking_transaction(
    repo: KeyRepository, clock: FakeClock, which: str
) -> None:
    """on_revoked runs inside the transaction that revokes: when it fails, nothing is revoked
    (so the key-revoked event commits with the revocation, or neither does)."""
    admin = KeyAdmin(repo, clock=clock)
    first = repo.ensure_signing_key(clock())
    kid = first.kid
    if which == "pending":
        kid = admin.rotate()["kid"]
    elif which == "retired":
        admin.rotate(now=True)
    clock.advance(1)

    def fail(conn: object) -> None:
        raise RuntimeError("the event could not be recorded")

    with pytest.raises(RuntimeError):
        repo.revoke(kid, clock(), on_revoked=fail)
    assert next(r for r in repo.records() if r.kid == kid).revoked_at is None
    seen: list[object] = []
    assert repo.revoke(kid, clock(), on_revoked=seen.append).revoked is True
    assert len(seen) == 1
    assert repo.revoke(kid, clock(), on_revoked=seen.append).revoked is False
    assert len(seen) == 1  # an already revoked key runs no hook
