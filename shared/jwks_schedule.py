"""When the JWKS cache fetches: the key set's lifetime, the planned refresh and poll, the back-off
after failures, the fetch budget and the unknown-``kid`` cooldown.

Pure: no I/O and no clock of its own; every method is handed ``now`` by the client
(``shared/jwks_client.py``), which owns the clock and does the fetching.

* The lifetime follows ``Cache-Control: max-age`` clamped to ``[min_ttl, max_ttl]``
  (``no-store``/``no-cache``: ``min_ttl``; no header: ``default_ttl``).
* After a success the next refresh is due ``refresh_ahead`` before the lifetime ends and at most
  ``poll_interval`` later, both counted from the *start* of the fetch that brought the set, so a
  slow fetch does not push the next poll.
* After a failure the next attempt waits ``retry_backoff`` doubling up to ``max_retry_backoff``,
  never longer than ``poll_interval``.
* Every fetch draws on a budget of ``max_fetches_per_minute``; a fetch for an unknown ``kid``
  is also limited to one per ``unknown_kid_cooldown``.
"""

from __future__ import annotations

import re
from collections import deque

from shared.jwks_settings import JWKSClientSettings

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


class RefreshSchedule:
    """The client's fetch plan. ``refresh_at``: when the planned refresh is due."""

    def __init__(self, settings: JWKSClientSettings) -> None:
        self.settings = settings
        self.refresh_at = 0.0
        self._next_attempt = 0.0  # no fetch before this (back-off after a failure)
        self._failures = 0  # consecutive failed fetches
        self._last_unknown_fetch = -float("inf")
        self._fetch_times: deque[float] = deque()  # starts of the fetches in the last minute

    def seconds_until_due(self, now: float) -> float:
        return max(0.0, self.refresh_at - now)

    def may_fetch(self, now: float) -> bool:
        """A fetch the cache wants (cold, stale or due) may start: no back-off, budget left."""
        return now >= self._next_attempt and self.budget_allows(now)

    def may_fetch_unknown_kid(self, now: float) -> bool:
        """A fetch for an unknown ``kid`` may start (its cooldown passed, budget left); if so,
        the cooldown starts again now."""
        if now - self._last_unknown_fetch >= self.settings.unknown_kid_cooldown and (
            self.budget_allows(now)
        ):
            self._last_unknown_fetch = now
            return True
        return False

    def budget_allows(self, now: float) -> bool:
        window = self._fetch_times
        while window and window[0] <= now - 60.0:
            window.popleft()
        return len(window) < self.settings.max_fetches_per_minute

    def fetch_started(self, now: float) -> None:
        self._fetch_times.append(now)

    def succeeded(self, started: float, now: float, cache_control: str | None) -> None:
        """A fetch that ``started`` then answered (200 or 304) ``now``."""
        self._failures = 0
        self._next_attempt = now
        # The answer describes the set as it was when the fetch started: plan from then, so a
        # slow fetch (say the one an unknown kid triggered) never pushes the next poll further
        # than poll_interval from the set it saw (issue 13.9). Due at once if it took longer.
        ahead = self.ttl(cache_control) * (1.0 - self.settings.refresh_ahead)
        self.refresh_at = started + min(ahead, self.settings.poll_interval)

    def failed(self, now: float) -> None:
        self._failures += 1
        # Never wait longer than a poll: the promise "a removed key is dropped within one poll
        # interval" holds again one interval after the issuer recovers (issue 13.9).
        backoff = min(
            self.settings.retry_backoff * (2 ** min(self._failures - 1, 30)),
            self.settings.max_retry_backoff,
            self.settings.poll_interval,
        )
        self._next_attempt = now + backoff
        self.refresh_at = now + backoff

    def retry_after(self, now: float) -> int:
        """Whole seconds until the next fetch may start (at least 1): a 503's ``Retry-After``."""
        return max(1, int(self._next_attempt - now + 0.999))

    def ttl(self, cache_control: str | None) -> float:
        """The key set's lifetime from its ``Cache-Control``, clamped to the settings' bounds."""
        s = self.settings
        if cache_control:
            if _NO_CACHE.search(cache_control):
                return s.min_ttl
            match = _MAX_AGE.search(cache_control)
            if match:
                return float(min(max(int(match.group(1)), s.min_ttl), s.max_ttl))
        return min(max(s.default_ttl, s.min_ttl), s.max_ttl)
