"""shared.deny_list: each matching rule and its negative, expiry on the injected clock, the
bound and its eviction, replayed events, and the memory one entry costs (tracemalloc).

``python -m tests.shared.test_deny_list`` prints the memory per entry at a few sizes."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from typing import Any

import pytest

from shared.clock import FakeClock
from shared.deny_list import APPLIED, DEFAULT_MAX_ENTRIES, EXPIRED, REPLAYED, DenyList
from shared.security_events import subject_hash
from shared.tokens import AccessToken

T0 = 1_700_000_000.0
MAX_BYTES_PER_ENTRY = 600


def access(
    *,
    jti: str = "token-jti",
    kid: str = "kid-1",
    sub: str = "user:alice",
    iat: float = T0,
    **claims: Any,
) -> AccessToken:
    return AccessToken(
        issuer="https://issuer.example",
        subject=sub,
        audience=("photos",),
        expires_at=iat + 900,
        issued_at=iat,
        jwt_id=jti,
        client_id="app",
        scopes=frozenset(),
        kid=kid,
        claims={"sub": sub, "jti": jti, "iat": iat, **claims},
    )


def deny(clock: FakeClock | None = None, **kwargs: Any) -> DenyList:
    return DenyList(clock=clock or FakeClock(T0), leeway=30, **kwargs)


def test_an_empty_list_is_inactive_and_refuses_nothing() -> None:
    entries = deny()
    assert not entries.active
    assert len(entries) == 0
    assert entries.check(access()) is None


def test_jti_refuses_that_token_only() -> None:
    entries = deny()
    assert entries.add("jti", "token-jti", before=None, expires=T0 + 900) == APPLIED
    assert entries.active
    assert entries.check(access()) == "jti"
    assert entries.check(access(jti="other")) is None
    # No cut-off: a jti names one token whatever its iat.
    assert entries.check(access(iat=T0 + 10_000)) == "jti"
    assert entries.refusals["jti"] == 2


def test_kid_refuses_every_token_of_that_key() -> None:
    entries = deny()
    entries.add("kid", "kid-1", before=None, expires=T0 + 900)
    assert entries.check(access(jti="a")) == "kid"
    assert entries.check(access(jti="b", iat=T0 + 500)) == "kid"
    assert entries.check(access(kid="kid-2")) is None
    assert entries.is_kid_revoked("kid-1")
    assert not entries.is_kid_revoked("kid-2")


@pytest.mark.parametrize("claim", ["sid", "fid"])
def test_sid_and_fid_refuse_tokens_issued_until_the_event(claim: str) -> None:
    entries = deny()
    entries.add(claim, "S1", before=T0 + 100, expires=T0 + 1000)
    hit: dict[str, Any] = {claim: "S1"}
    assert entries.check(access(iat=T0 + 100, **hit)) == claim  # inclusive
    assert entries.check(access(iat=T0, **hit)) == claim
    assert entries.check(access(iat=T0 + 101, **hit)) is None  # issued after
    miss: dict[str, Any] = {claim: "S2"}
    assert entries.check(access(**miss)) is None
    assert entries.check(access()) is None  # a token without the claim
    other: dict[str, Any] = {"fid" if claim == "sid" else "sid": "S1"}
    assert entries.check(access(**other)) is None  # the other claim is not this one


def test_a_non_string_claim_matches_nothing() -> None:
    entries = deny()
    entries.add("sid", "1", before=T0, expires=T0 + 1000)
    assert entries.check(access(sid=1)) is None
    assert entries.check(access(sid=["1"])) is None


def test_sub_matches_the_hash_of_the_tokens_subject() -> None:
    entries = deny()
    entries.add("sub", subject_hash("user:alice"), before=T0 + 5, expires=T0 + 1000)
    assert entries.check(access(iat=T0)) == "sub"
    assert entries.check(access(iat=T0 + 6)) is None  # issued after: e.g. enabled again
    assert entries.check(access(sub="user:bob")) is None
    # The clear id is not what the stream carries: an entry of it matches nothing.
    entries.add("sub", "user:bob", before=T0 + 5, expires=T0 + 1000)
    assert entries.check(access(sub="user:bob")) is None


def test_the_subject_is_hashed_only_when_there_are_sub_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting(sub: str) -> str:
        calls.append(sub)
        return subject_hash(sub)

    monkeypatch.setattr("shared.deny_list.subject_hash", counting)
    entries = deny()
    entries.add("jti", "x", before=None, expires=T0 + 900)
    entries.check(access())
    assert calls == []
    entries.add("sub", subject_hash("user:carol"), before=T0, expires=T0 + 900)
    entries.check(access())
    assert calls == ["user:alice"]


def test_entries_expire_after_their_exp_plus_leeway() -> None:
    clock = FakeClock(T0)
    entries = deny(clock)
    entries.add("jti", "token-jti", before=None, expires=T0 + 100)
    clock.advance(129.9)
    assert entries.check(access()) == "jti"
    clock.advance(0.1)  # exp + leeway: the verifier refuses the token as expired from here
    assert entries.check(access()) is None  # exact before any purge
    assert len(entries) == 1
    assert entries.purge() == 1
    assert len(entries) == 0
    assert not entries.active


def test_an_expired_event_is_not_added() -> None:
    clock = FakeClock(T0)
    entries = deny(clock)
    assert entries.add("jti", "old", before=None, expires=T0 - 30) == EXPIRED
    assert len(entries) == 0
    assert not entries.active


def test_the_purge_does_bounded_work_per_call() -> None:
    clock = FakeClock(T0)
    entries = deny(clock)
    for i in range(200):
        entries.add("jti", f"j{i}", before=None, expires=T0 + 10)
    clock.advance(100)
    assert entries.purge() == 64
    assert entries.purge() == 64
    assert entries.purge() + entries.purge() == 72
    assert not entries.active


def test_a_full_list_drops_the_entry_that_expires_soonest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = deny(max_entries=3)
    entries.add("jti", "late", before=None, expires=T0 + 900)
    entries.add("jti", "soon", before=None, expires=T0 + 100)
    entries.add("jti", "middle", before=None, expires=T0 + 500)
    with caplog.at_level(logging.WARNING, logger="keyhouse.deny_list"):
        entries.add("jti", "new", before=None, expires=T0 + 600)
        entries.add("jti", "newer", before=None, expires=T0 + 700)
    assert len(entries) == 3
    assert entries.evicted == 2
    assert [entries.check(access(jti=j)) for j in ("soon", "middle")] == [None, None]
    assert [entries.check(access(jti=j)) for j in ("late", "new", "newer")] == ["jti"] * 3
    warnings = [r for r in caplog.records if "deny-list is full" in r.getMessage()]
    assert len(warnings) == 1  # one line, then counted


def test_a_replayed_event_changes_nothing() -> None:
    entries = deny()
    assert entries.add("sid", "S", before=T0, expires=T0 + 900, event_id="e1") == APPLIED
    # The same event id again, even with other content: nothing changes.
    assert entries.add("sid", "S", before=T0 + 500, expires=T0 + 2000, event_id="e1") == REPLAYED
    assert entries.check(access(iat=T0 + 1, sid="S")) is None
    assert len(entries) == 1


def test_a_forgotten_event_id_replayed_adds_nothing_twice() -> None:
    entries = deny(max_entries=1)
    entries.add("jti", "a", before=None, expires=T0 + 900, event_id="e1")
    entries.add("jti", "b", before=None, expires=T0 + 901, event_id="e2")  # evicts a, forgets e1
    assert entries.add("jti", "b", before=None, expires=T0 + 901, event_id="e2") == REPLAYED
    assert entries.add("jti", "b", before=None, expires=T0 + 901, event_id="e3") == APPLIED
    assert len(entries) == 1


def test_two_events_on_one_value_keep_both_cutoffs() -> None:
    """A user disabled (until T0+1000) then their password changed later but covering less
    (until T0+500): after T0+500, a token issued between the two events is no longer covered."""
    clock = FakeClock(T0)
    entries = deny(clock)
    user = subject_hash("user:alice")
    entries.add("sub", user, before=T0 + 10, expires=T0 + 1000)
    entries.add("sub", user, before=T0 + 20, expires=T0 + 500)
    assert len(entries) == 2
    assert entries.check(access(iat=T0 + 15)) == "sub"
    clock.advance(531)
    assert entries.check(access(iat=T0 + 15)) is None
    assert entries.check(access(iat=T0 + 5)) == "sub"


def test_an_entry_covering_another_replaces_it() -> None:
    entries = deny()
    entries.add("fid", "F", before=T0 + 10, expires=T0 + 500)
    entries.add("fid", "F", before=T0 + 20, expires=T0 + 900)  # covers the first
    assert len(entries) == 1
    assert entries.add("fid", "F", before=T0 + 5, expires=T0 + 400) == APPLIED  # covered
    assert len(entries) == 1
    assert entries.counts() == {"jti": 0, "kid": 0, "sid": 0, "fid": 1, "sub": 0}


def test_stale_heap_rows_are_compacted() -> None:
    entries = deny()
    for i in range(3000):  # each covers the previous: one entry, stale rows behind it
        entries.add("jti", "same", before=None, expires=T0 + 100 + i)
    assert len(entries) == 1
    assert len(entries._heap) <= 2 * len(entries) + 1025


@pytest.mark.parametrize(
    ("kind", "before", "message"),
    [
        ("jti", T0, "takes no cut-off"),
        ("kid", T0, "takes no cut-off"),
        ("sid", None, "needs"),
        ("sub", None, "needs"),
        ("aud", None, "unknown"),
    ],
)
def test_malformed_entries_are_refused(kind: str, before: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deny().add(kind, "v", before=before, expires=T0 + 900)


def test_an_empty_value_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        deny().add("jti", "", before=None, expires=T0 + 900)


def test_the_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DenyList(max_entries=0)


def measure_bytes_per_entry(count: int = 20_000) -> float:
    """Memory held per entry (with its remembered event id), measured by tracemalloc while
    filling the list: the values and event ids are made during the measure, as the stream's
    parser makes them."""
    clock = FakeClock(T0)
    entries = DenyList(max_entries=count, clock=clock)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            entries.add(
                "jti",
                f"{i:022d}",  # a token jti: 22 characters (secrets.token_urlsafe(16))
                before=None,
                expires=T0 + 900 + i,
                event_id=f"e{i:021d}",
            )
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(entries) == count
    return (after - before) / count


def test_the_memory_per_entry_is_bounded() -> None:
    per_entry = measure_bytes_per_entry()
    print(f"deny-list: {per_entry:.0f} bytes per entry")
    assert per_entry <= MAX_BYTES_PER_ENTRY
    assert DEFAULT_MAX_ENTRIES * MAX_BYTES_PER_ENTRY <= 60 * 2**20


if __name__ == "__main__":
    for size in (10_000, 100_000, 200_000):
        print(f"{size:>8} entries: {measure_bytes_per_entry(size):.0f} bytes per entry")


def test_check_kid_refuses_a_revoked_key_and_counts_it() -> None:
    entries = deny()
    assert entries.check_kid("kid-1") is None
    entries.add("kid", "kid-1", before=None, expires=T0 + 900)
    assert entries.check_kid("kid-1") == "kid"
    assert entries.check_kid("kid-2") is None
    assert entries.refusals["kid"] == 1
