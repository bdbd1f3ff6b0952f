"""A bounded LRU of verified access tokens, so a repeated token skips parsing and RSA.

The key is the exact token string (a different spelling is a different token and is verified
from scratch); the value is the :class:`~shared.tokens.AccessToken` the verifier produced. An
entry is served only while ``now < exp + leeway``, the same bound
:meth:`shared.tokens.TokenVerifier.check_claims` applies, so the cache never accepts a token the
verifier would refuse for its age. When the JWKS client's key set changes (its ``generation``
moves), every entry whose ``kid`` is no longer published is purged: a key the issuer withdrew
stops authenticating cached tokens as soon as the verifier learns of it.

The hit path is a dict lookup, one comparison and an LRU bump; everything else happens on a miss
or when the key set changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from shared.clock import Clock, system_clock
from shared.tokens import AccessToken


class TokenCache:
    """Exact token string -> verified claims, at most ``max_size`` entries, least recently used
    evicted first. ``max_size`` 0 disables the cache (every lookup misses, nothing is stored)."""

    def __init__(self, max_size: int, *, leeway: float = 0.0, clock: Clock = system_clock) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.max_size = max_size
        self.leeway = leeway
        self._clock = clock
        self._entries: OrderedDict[str, AccessToken] = OrderedDict()
        self.generation: int | None = None  # the JWKS generation the entries were checked against
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.max_size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float | None = None) -> AccessToken | None:
        """The cached claims for exactly ``token``, or None (unknown or expired)."""
        entry = self._entries.get(token)
        if entry is None:
            self.misses += 1
            return None
        if (self._clock() if now is None else now) >= entry.expires_at + self.leeway:
            del self._entries[token]
            self.misses += 1
            return None
        self._entries.move_to_end(token)
        self.hits += 1
        return entry

    def put(self, token: str, access: AccessToken) -> None:
        if self.max_size <= 0:
            return
        self._entries[token] = access
        self._entries.move_to_end(token)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
            self.evictions += 1

    def sync(self, generation: int, kids: Collection[str]) -> int:
        """Purge entries whose ``kid`` left the key set; cheap when ``generation`` is unchanged.

        Returns how many entries were purged.
        """
        if generation == self.generation:
            return 0
        self.generation = generation
        gone = [token for token, access in self._entries.items() if access.kid not in kids]
        for token in gone:
            del self._entries[token]
        return len(gone)

    def clear(self) -> None:
        self._entries.clear()
