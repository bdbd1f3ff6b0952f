"""The DPoP replay cache (RFC 9449 §11.1): a proof's ``jti`` is accepted once per key and URL.

A proof is only acceptable while its ``iat`` is inside the verifier's window, so a ``jti`` needs
remembering for that long and no longer. Each entry is scoped to the proof key's thumbprint and
the normalised ``htu`` (two keys, or two URLs, never collide), and is stored as a 16-byte BLAKE2b
digest of the three: memory per entry does not depend on how long the ``jti`` or URL is, and a
digest collision (about 2^-64 at a million entries) could only refuse an honest proof, never
accept a replay.

**Expiry.** An entry is kept until ``lifetime`` seconds after it was recorded (inclusive: the
``iat`` check's bounds are inclusive too), where the verifier sets
``lifetime`` to its past window plus its future leeway: a proof dated at most ``max_future`` ahead
stops passing the ``iat`` check ``max_age`` after its ``iat``, so at the latest ``max_age +
max_future`` after it was first seen. Entries are kept in insertion order with one expiry time
each, so expired ones are dropped from the front with no scan. If the injected clock steps back,
later entries can expire before earlier ones; they are then dropped late (never early), which
only costs memory for a while and never opens a replay.

**When full** (``max_entries`` unexpired entries), a new proof is refused with
:class:`ReplayCacheFull` (503 ``temporarily_unavailable``, ``Retry-After`` until the oldest entry
expires); no unexpired entry is ever evicted. Evicting the oldest would keep serving, but it is
exactly what an attacker wants: anyone can make a key and sign valid proofs with it, so one who
holds a captured proof pushes ``max_entries`` fresh proofs through within the window, the
captured ``jti`` is forgotten and the proof is accepted again. Refusing when full fails closed:
the price of a flood that fills the cache is DPoP requests refused for at most ``lifetime``
seconds (an availability loss that rate limits in front of the verifier answer, as for any
flood), never a proof accepted twice.

**Size.** One entry costs about 180 bytes (178 measured with tracemalloc at 100,000 and 200,000
entries on CPython 3.11; ``python -m tests.shared.test_dpop_replay`` measures it again, and
tests/shared/test_dpop_replay.py fails past 200). The default 200,000 entries are therefore about
36 MB at most, and take 3,000 fresh proofs a second, sustained, per process with the default
65-second lifetime before the cache refuses.

The cache is per process. Several processes or replicas each keep their own, so a proof replayed
to another replica within the window is not detected by this cache (RFC 9449 §11.1 names this;
a server-provided nonce, §9, narrows it). It is thread-safe (one lock around each operation).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict

from shared.clock import Clock, system_clock
from shared.errors import TemporarilyUnavailable

DEFAULT_MAX_ENTRIES = 200_000


class ReplayCacheFull(TemporarilyUnavailable):
    """Every slot holds an unexpired ``jti``: 503 ``temporarily_unavailable`` with
    ``Retry-After`` (seconds until the oldest entry expires)."""


class ReplayCache:
    """Seen ``(jkt, htu, jti)`` triples, each kept ``lifetime`` seconds, at most ``max_entries``."""

    def __init__(
        self,
        *,
        lifetime: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = system_clock,
    ) -> None:
        if not (lifetime > 0 and math.isfinite(lifetime)):
            raise ValueError("lifetime must be a positive number of seconds")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # digest -> expires at
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _digest(jkt: str, htu: str, jti: str) -> bytes:
        # Lengths first: ("a", "bc") and ("ab", "c") must not hash alike.
        h = hashlib.blake2b(digest_size=16)
        for part in (jkt, htu, jti):
            raw = part.encode("utf-8", "surrogatepass")
            h.update(len(raw).to_bytes(4, "big"))
            h.update(raw)
        return h.digest()

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest, expires_at = next(iter(entries.items()))
            if expires_at >= now:
                return
            del entries[oldest]

    def record(self, jkt: str, htu: str, jti: str) -> bool:
        """Remember the triple and answer True; False if it was already seen and has not
        expired (a replay). Raises :class:`ReplayCacheFull` when every slot is in use."""
        key = self._digest(jkt, htu, jti)
        with self._lock:
            now = self._clock()
            self._expire(now)
            expires_at = self._entries.get(key)
            if expires_at is not None and expires_at >= now:
                return False
            if len(self._entries) >= self.max_entries:
                oldest_expiry = next(iter(self._entries.values()))
                wait = max(1, math.ceil(oldest_expiry - now))
                raise ReplayCacheFull(
                    "too many DPoP proofs in flight; retry later", retry_after=wait
                )
            self._entries.pop(key, None)  # an expired twin left behind by a clock step back
            self._entries[key] = now + self.lifetime
            return True
