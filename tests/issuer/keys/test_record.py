"""A key's state is a function of its stored times and the clock (injected: no sleeps)."""

from __future__ import annotations

from issuer.keys import KeyRepository
from shared.clock import FakeClock
from tests.issuer.keys.support import AHEAD, INTERVAL, MARGIN, TTL, published_kids, signing_kid


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
        assert signing_kid(repo, at) == signer
        published = published_kids(repo, at)
        assert (first.kid in published) == (old_state in {"active", "retired"})
        assert (nxt.kid in published) == (new_state in {"published", "active"})
