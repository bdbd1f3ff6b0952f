"""``--rate``: the workers' shared pace, on a fake clock (nothing sleeps for real)."""

from __future__ import annotations

import asyncio

import pytest

from drill.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_slots_are_one_over_the_rate_apart_for_all_callers() -> None:
    clock = Clock()
    pacer = Pacer(4, now=clock.now, sleep=clock.sleep)
    times = []

    async def worker() -> None:
        for _ in range(3):
            await pacer.wait()
            times.append(clock.t)

    async def main() -> None:
        await asyncio.gather(worker(), worker())

    asyncio.run(main())
    assert times == pytest.approx([100 + i * 0.25 for i in range(6)])


def test_a_caller_behind_its_slot_goes_at_once_and_banks_no_burst() -> None:
    clock = Clock()
    pacer = Pacer(10, now=clock.now, sleep=clock.sleep)
    asyncio.run(pacer.wait())
    clock.t += 5  # a slow answer: 50 slots went by unused
    asyncio.run(pacer.wait())
    asyncio.run(pacer.wait())
    assert clock.slept == pytest.approx([0.1])  # the third waits its 1/rate, no burst


def test_rate_zero_never_waits() -> None:
    clock = Clock()
    pacer = Pacer(0, now=clock.now, sleep=clock.sleep)
    for _ in range(100):
        asyncio.run(pacer.wait())
    assert clock.slept == []


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        Pacer(-1)
