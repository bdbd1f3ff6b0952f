"""The deny-list of a resource service: the access tokens pushed revocation events refuse.

The issuer pushes Security Event Tokens (RFC 8417; the format: ``shared/security_events.py``);
each verified event (``shared/event_verification.py``) becomes one entry here, and
:class:`~shared.verification.BearerAuthenticator` asks :meth:`DenyList.check` on every request,
verified-token cache hits included.

**Matching** (an entry is ``(claim, value, before, expires)``): a token is refused when

* ``jti``: the token's ``jti`` is ``value``;
* ``kid``: the token's header ``kid`` is ``value``;
* ``sid`` / ``fid`` / ``sub``: the token's claim is ``value`` (for ``sub``, its hash
  :func:`~shared.security_events.subject_hash`: the stream publishes no user id in clear) AND
  the token's ``iat <= before`` (the event's time): a token issued after the event, say once the
  user is enabled again, is not refused;

and the entry is still alive: ``now < expires + leeway``. ``expires`` is the event's
``keyhouse_exp``, the latest ``exp`` of any token the event covers, and ``leeway`` the
verifier's: past that bound every covered token is refused as expired anyway, so the entry is
dropped. Entries are dropped lazily: expired ones leave from a heap ordered by expiry, at most
``PURGE_BATCH`` per call of :meth:`add` or :meth:`purge` (the subscriber calls it on every
message and keepalive), so no call does unbounded work; :meth:`check` reads no clock unless an
entry matches (then it checks that entry's expiry, so a match is exact even before a purge).

Two events on one value (a user disabled, then their password changed) keep both cut-offs
unless one covers the other (a later ``before`` and a later ``expires``): merging them into one
entry (the later ``before``, the later ``expires``) would refuse tokens that no live event
covers.

**Cost.** Empty, :meth:`check` is not even called (the authenticator tests :attr:`active`, one
attribute). Otherwise it is one truthiness test per claim kind and one dict lookup per kind that
holds entries; the token's ``sub`` is hashed only when ``sub`` entries exist.

**Bound.** At most ``max_entries`` (RESOURCE_DENY_LIST_SIZE, default 100,000). When full, the
entry that expires soonest is dropped (counted in :attr:`evicted`, one warning logged): it
protects for the shortest time (the tokens it covers die soonest), and the newest revocation, most
likely the one in progress, is kept. Refusing the new entry instead would leave exactly the
latest revocation unenforced; dropping at random would not prefer either. The pushed events are
signed by the issuer, so filling the list needs the issuer to revoke that much at once.

**Replays.** The ``jti`` of every applied event is remembered until its entry's expiry (at most
``max_entries`` of them, the oldest forgotten first): a replayed event is answered
``"replayed"`` and changes nothing. Even a forgotten one changes nothing: an entry that is
already held (or covered) is not added twice, and one already expired is not added at all.

**Memory.** About 490 bytes per entry with its remembered event ``jti`` (measured with
tracemalloc on CPython 3.11 at 100,000 and 200,000 entries of 22-character values:
``python -m tests.shared.test_deny_list`` measures it again, and tests/shared/test_deny_list.py
fails past 600), so the default 100,000 entries hold about 49 MB at most.

Not thread-safe: one event loop owns it (the subscriber writes, requests read).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter

from shared.clock import Clock, system_clock
from shared.security_events import subject_hash
from shared.tokens import AccessToken

logger = logging.getLogger("keyhouse.deny_list")

DEFAULT_MAX_ENTRIES = 100_000
PURGE_BATCH = 64  # expired entries dropped per call at most
KINDS = ("jti", "kid", "sid", "fid", "sub")
CUTOFF_KINDS = frozenset({"sid", "fid", "sub"})

# What add() answers.
APPLIED = "applied"  # the entry is held (new, or already covered by one held)
REPLAYED = "replayed"  # this event jti was applied before: nothing changed
EXPIRED = "expired"  # the entry's expiry has passed: every token it covers is expired anyway

_Cut = tuple[float, float, int]  # (before, expires, seq); before is inf for jti and kid


class DenyList:
    """Deny-list entries by claim kind, bounded, each dropped when its tokens have expired."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        leeway: float = 30.0,
        clock: Clock = system_clock,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.leeway = leeway
        self._clock = clock
        self.active = False  # True while any entry is held: the hot path's one test
        self._jti: dict[str, tuple[_Cut, ...]] = {}
        self._kid: dict[str, tuple[_Cut, ...]] = {}
        self._sid: dict[str, tuple[_Cut, ...]] = {}
        self._fid: dict[str, tuple[_Cut, ...]] = {}
        self._sub: dict[str, tuple[_Cut, ...]] = {}
        self._maps = {
            "jti": self._jti,
            "kid": self._kid,
            "sid": self._sid,
            "fid": self._fid,
            "sub": self._sub,
        }
        # (expires, seq, kind, value): one per entry held, plus stale ones of entries that a
        # covering entry replaced (skipped when popped; compacted when they pile up).
        self._heap: list[tuple[float, int, str, str]] = []
        self._count = 0
        self._seq = 0
        self._seen: dict[str, float] = {}  # applied event jti -> forgotten after
        self.evicted = 0  # entries dropped unexpired because the list was full
        self.refusals: Counter[str] = Counter()  # tokens refused, by claim kind
        self._warned_full = False

    def __len__(self) -> int:
        return self._count

    def counts(self) -> dict[str, int]:
        """Entries held by claim kind."""
        return {kind: sum(len(c) for c in self._maps[kind].values()) for kind in KINDS}

    def is_kid_revoked(self, kid: str) -> bool:
        """Whether tokens signed with ``kid`` are refused (a revoked signing key)."""
        cuts = self._kid.get(kid)
        return cuts is not None and self._alive(cuts, -math.inf)

    # -- the request path ----------------------------------------------------------------------

    def check(self, access: AccessToken) -> str | None:
        """The claim kind an entry refuses ``access`` for, or None."""
        iat = access.issued_at
        if self._jti:
            cuts = self._jti.get(access.jwt_id)
            if cuts is not None and self._alive(cuts, iat):
                return self._refused("jti")
        if self._kid:
            cuts = self._kid.get(access.kid)
            if cuts is not None and self._alive(cuts, iat):
                return self._refused("kid")
        if self._sid:
            sid = access.claims.get("sid")
            cuts = self._sid.get(sid) if isinstance(sid, str) else None
            if cuts is not None and self._alive(cuts, iat):
                return self._refused("sid")
        if self._fid:
            fid = access.claims.get("fid")
            cuts = self._fid.get(fid) if isinstance(fid, str) else None
            if cuts is not None and self._alive(cuts, iat):
                return self._refused("fid")
        if self._sub:
            cuts = self._sub.get(subject_hash(access.subject))
            if cuts is not None and self._alive(cuts, iat):
                return self._refused("sub")
        return None

    def check_kid(self, kid: str) -> str | None:
        """``"kid"`` if tokens signed with ``kid`` are refused (counted like :meth:`check`):
        asked before the key lookup, so a revoked key's token is refused as revoked even once
        the key has left the key set."""
        cuts = self._kid.get(kid) if self._kid else None
        if cuts is not None and self._alive(cuts, -math.inf):
            return self._refused("kid")
        return None

    def _alive(self, cuts: tuple[_Cut, ...], iat: float) -> bool:
        """Whether one of ``cuts`` covers a token issued at ``iat`` and has not expired."""
        now: float | None = None
        for before, expires, _ in cuts:
            if iat <= before:
                if now is None:
                    now = self._clock()
                if now < expires + self.leeway:
                    return True
        return False

    def _refused(self, kind: str) -> str:
        self.refusals[kind] += 1
        return kind

    # -- the event path ------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        value: str,
        *,
        before: float | None,
        expires: float,
        event_id: str | None = None,
    ) -> str:
        """Hold an entry: :data:`APPLIED`, :data:`REPLAYED` or :data:`EXPIRED`.

        ``before`` is the iat cut-off, required for ``sid``/``fid``/``sub`` and None for
        ``jti``/``kid`` (every token with that value); ``event_id`` the event's own ``jti``.
        """
        if kind not in self._maps:
            raise ValueError(f"unknown deny-list claim {kind!r}")
        if (before is None) == (kind in CUTOFF_KINDS):
            raise ValueError(f"a {kind} entry {'needs' if before is None else 'takes no'} cut-off")
        if not value:
            raise ValueError("a deny-list value must not be empty")
        now = self._clock()
        self.purge(now)
        if event_id is not None and event_id in self._seen:
            return REPLAYED
        if now >= expires + self.leeway:
            return EXPIRED
        cut_off = math.inf if before is None else float(before)
        expires = float(expires)  # one float object, shared by the entry and its heap row
        entries = self._maps[kind]
        cuts = entries.get(value, ())
        if not any(b >= cut_off and e >= expires for b, e, _ in cuts):
            kept = tuple(c for c in cuts if not (cut_off >= c[0] and expires >= c[1]))
            self._count -= len(cuts) - len(kept)  # covered by the new one: their heap rows go stale
            self._seq += 1
            entries[value] = (*kept, (cut_off, expires, self._seq))
            heapq.heappush(self._heap, (expires, self._seq, kind, value))
            self._count += 1
            while self._count > self.max_entries:
                self._evict()
            if len(self._heap) > 2 * self._count + 1024:
                self._compact()
        if event_id is not None:
            self._remember(event_id, expires + self.leeway)
        self.active = self._count > 0
        return APPLIED

    def purge(self, now: float | None = None) -> int:
        """Drop at most ``PURGE_BATCH`` expired entries (and as many remembered event ids);
        returns how many entries went."""
        now = self._clock() if now is None else now
        heap = self._heap
        dropped = 0
        for _ in range(PURGE_BATCH):
            if not heap or heap[0][0] + self.leeway > now:
                break
            if self._pop():
                dropped += 1
        seen = self._seen
        for _ in range(PURGE_BATCH):
            if not seen:
                break
            event_id, until = next(iter(seen.items()))
            if until > now:
                break
            del seen[event_id]
        self.active = self._count > 0
        return dropped

    def _evict(self) -> None:
        """Drop the entry that expires soonest (the list is full)."""
        while not self._pop():
            pass
        self.evicted += 1
        if not self._warned_full:
            self._warned_full = True
            logger.warning(
                "the deny-list is full (%d entries): dropping the entries that expire soonest "
                "(raise RESOURCE_DENY_LIST_SIZE); further drops are counted, not logged",
                self.max_entries,
            )

    def _pop(self) -> bool:
        """Pop the heap's first row; True if it was an entry held (now dropped)."""
        _, seq, kind, value = heapq.heappop(self._heap)
        entries = self._maps[kind]
        cuts = entries.get(value, ())
        kept = tuple(c for c in cuts if c[2] != seq)
        if len(kept) == len(cuts):
            return False  # stale: a covering entry replaced it
        if kept:
            entries[value] = kept
        else:
            del entries[value]
        self._count -= 1
        return True

    def _compact(self) -> None:
        self._heap = [
            (cut[1], cut[2], kind, value)
            for kind, entries in self._maps.items()
            for value, cuts in entries.items()
            for cut in cuts
        ]
        heapq.heapify(self._heap)

    def _remember(self, event_id: str, until: float) -> None:
        seen = self._seen
        if len(seen) >= self.max_entries:
            seen.pop(next(iter(seen)))
        seen[event_id] = until
