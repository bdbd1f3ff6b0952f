"""``--rate``: the load workers' shared pace, at most ``rate`` requests a second in all.

One schedule for every worker: each request takes the next free slot (slots ``1/rate`` apart)
and waits for it. A worker that falls behind (a slow answer) does not bank slots for a burst
later: a slot in the past is moved to now. ``rate`` 0 means no pace (each worker sends its next
request as soon as the last is answered, the drill's load before ``--rate`` existed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(
        self,
        rate: float,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.rate = rate
        self._now = now
        self._sleep = sleep
        self._next = 0.0

    async def wait(self) -> None:
        """Return at this caller's slot (at once without a pace)."""
        if self.rate == 0:
            return
        now = self._now()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await self._sleep(slot - now)
