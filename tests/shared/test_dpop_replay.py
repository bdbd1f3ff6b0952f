"""shared.dpop_replay: a jti once per key and URL within the window, expiry on the injected clock,
the bound and its refusal, and the memory one entry costs (measured with tracemalloc)."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pytest

from shared.clock import FakeClock
from shared.dpop_replay import DEFAULT_MAX_ENTRIES, ReplayCache, ReplayCacheFull
from shared.errors import TemporarilyUnavailable

URL = "https://api.example.com/photos"


def test_a_jti_is_accepted_once_within_the_lifetime() -> None:
    clock = FakeClock()
    cache = ReplayCache(lifetime=65, clock=clock)
    assert cache.record("k", URL, "j1") is True
    assert cache.record("k", URL, "j1") is False
    clock.advance(65)
    assert cache.record("k", URL, "j1") is False  # the bound is inclusive
    clock.advance(0.001)
    assert cache.record("k", URL, "j1") is True  # forgotten after the lifetime
    assert len(cache) == 1


def test_entries_are_scoped_by_key_and_url() -> None:
    cache = ReplayCache(lifetime=65, clock=FakeClock())
    assert cache.record("k1", URL, "j")
    assert cache.record("k2", URL, "j")
    assert cache.record("k1", URL + "/x", "j")
    # Length-prefixed: moving characters between the parts is another entry.
    assert cache.record("k1j", URL, "")
    assert cache.record("k1", URL + "j", "")
    assert not cache.record("k1", URL, "j")


def test_expired_entries_are_dropped_as_time_passes() -> None:
    clock = FakeClock()
    cache = ReplayCache(lifetime=10, clock=clock)
    for i in range(5):
        cache.record("k", URL, f"j{i}")
        clock.advance(3)
    # Recorded at 0, 3, 6, 9, 12 (kept until 10, 13, 16, 19, 22): the record at 12 dropped j0,
    # the one at 15 drops j1.
    assert len(cache) == 4
    cache.record("k", URL, "new")
    assert len(cache) == 4
    assert cache.record("k", URL, "j0")
    assert not cache.record("k", URL, "j2")


def test_a_full_cache_refuses_until_the_oldest_entry_expires() -> None:
    clock = FakeClock()
    cache = ReplayCache(lifetime=60, max_entries=3, clock=clock)
    for i in range(3):
        assert cache.record("k", URL, f"j{i}")
        clock.advance(1)
    with pytest.raises(ReplayCacheFull) as info:
        cache.record("k", URL, "j3")
    assert isinstance(info.value, TemporarilyUnavailable)
    assert info.value.retry_after == 57  # the first entry expires at 60; now is 3
    # Nothing was evicted: every recorded jti is still a replay.
    assert [cache.record("k", URL, f"j{i}") for i in range(3)] == [False, False, False]
    clock.advance(57.5)
    assert cache.record("k", URL, "j3")
    assert not cache.record("k", URL, "j1")


def test_a_replay_is_answered_even_when_full() -> None:
    cache = ReplayCache(lifetime=60, max_entries=1, clock=FakeClock())
    cache.record("k", URL, "j")
    assert cache.record("k", URL, "j") is False


def test_a_clock_stepping_back_never_forgets_early() -> None:
    clock = FakeClock(1000)
    cache = ReplayCache(lifetime=10, clock=clock)
    cache.record("k", URL, "a")  # kept until 1010
    clock.now = 900
    cache.record("k", URL, "b")  # kept until 910, behind "a"
    clock.now = 1005
    assert not cache.record("k", URL, "a")
    assert cache.record("k", URL, "b")  # expired: accepted again, entry renewed
    clock.now = 1012
    assert cache.record("k", URL, "a")
    assert not cache.record("k", URL, "b")  # renewed at 1005, kept until 1015


def test_settings_are_checked() -> None:
    for lifetime in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lifetime"):
            ReplayCache(lifetime=lifetime)
    with pytest.raises(ValueError, match="max_entries"):
        ReplayCache(lifetime=1, max_entries=0)


def test_threads_record_each_jti_exactly_once() -> None:
    cache = ReplayCache(lifetime=60, clock=FakeClock())
    accepted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        results = [cache.record("k", URL, f"j{i}") for i in range(2000)]
        with lock:
            accepted.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted.count(True) == 2000


# The figure shared/dpop_replay.py's docstring quotes; an entry costing more fails this test.
MAX_BYTES_PER_ENTRY = 200


def measure_bytes_per_entry(count: int = 50_000) -> float:
    """Memory the cache holds per entry, measured by tracemalloc while filling it."""
    clock = FakeClock()
    cache = ReplayCache(lifetime=60, max_entries=count, clock=clock)
    jtis = [f"{i:036d}" for i in range(count)]  # as long as a UUID, made before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for jti in jtis:
            cache.record("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", URL, jti)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) == count
    return (after - before) / count


def test_the_memory_per_entry_is_bounded() -> None:
    per_entry = measure_bytes_per_entry()
    print(f"replay cache: {per_entry:.0f} bytes per entry")
    assert per_entry <= MAX_BYTES_PER_ENTRY
    assert DEFAULT_MAX_ENTRIES * MAX_BYTES_PER_ENTRY <= 40 * 2**20


if __name__ == "__main__":
    for n in (10_000, 100_000, DEFAULT_MAX_ENTRIES):
        print(f"{n:>7} entries: {measure_bytes_per_entry(n):.1f} bytes per entry")
