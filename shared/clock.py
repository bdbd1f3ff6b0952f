"""An injectable clock: every time-dependent function takes ``Clock`` so tests never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time as seconds since the epoch (like :func:`time.time`)."""


def system_clock() -> float:
    return time.time()


class FakeClock:
    """A manually advanced clock for tests and drills."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
