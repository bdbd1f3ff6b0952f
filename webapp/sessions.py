"""The web app's sessions: server-side, in this process's memory, bounded.

The browser holds only an opaque cookie value (256 random bits); the store keys sessions by its
SHA-256, so the map never holds a usable cookie. Everything else (the pending sign-ins' PKCE
verifiers, the tokens, the CSRF token) stays here.

Two bounded maps, each least-recently-used first:

* **anonymous** sessions exist only to carry pending sign-ins (state, nonce, PKCE verifier)
  from ``/login`` to ``/callback``. Anyone can create them, so a flood of ``/login`` requests
  only pushes out other pending sign-ins, never a signed-in session.
* **signed-in** sessions are made only by a successful code exchange (a person who proved their
  password to the issuer), under a fresh cookie value (the anonymous one is dropped: no session
  fixation).

A session ends when it has been idle for ``idle_ttl``, at ``ttl`` after it was created, when the
person signs out, or when the map is full and it is the least recently used. Nothing survives a
restart: every person signs in again (the issuer's own session usually spares them the
password).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from shared.clock import Clock, system_clock

MAX_PENDING = 4  # sign-ins in progress per browser (tabs); the oldest goes first


@dataclass
class PendingLogin:
    """One authorization request on its way through the issuer's pages."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    created_at: float


@dataclass
class AccessGrant:
    token: str = field(repr=False)
    expires_at: float
    lifetime: float


@dataclass
class SignedIn:
    """What a successful sign-in left on the server: never sent to the browser."""

    subject: str
    display_name: str
    id_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access: dict[str, AccessGrant] = field(default_factory=dict)


@dataclass
class Session:
    key: bytes = field(repr=False)
    csrf_token: str = field(repr=False)
    created_at: float
    last_seen_at: float
    pending: OrderedDict[str, PendingLogin] = field(default_factory=OrderedDict)
    user: SignedIn | None = None
    notice: str | None = None  # shown once, on the next page (after a form's redirect)
    # Refresh tokens rotate on every use: two refreshes at once with one token would be reuse
    # (and end the whole family at the issuer), so a session's token work is serialised.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    ended: bool = False


def _digest(cookie_value: str) -> bytes:
    return hashlib.sha256(cookie_value.encode("utf-8", "surrogatepass")).digest()


class SessionStore:
    def __init__(
        self,
        *,
        max_sessions: int,
        idle_ttl: float,
        ttl: float,
        login_ttl: float,
        clock: Clock = system_clock,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_ttl = idle_ttl
        self.ttl = ttl
        self.login_ttl = login_ttl
        self._clock = clock
        self._anonymous: OrderedDict[bytes, Session] = OrderedDict()
        self._signed_in: OrderedDict[bytes, Session] = OrderedDict()
        self.evicted = 0  # sessions pushed out by the bound (not expired ones)

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._signed_in)

    @property
    def signed_in_count(self) -> int:
        return len(self._signed_in)

    def create(self) -> tuple[str, Session]:
        """A new anonymous session and its cookie value."""
        now = self._clock()
        value, session = self._new(now)
        self._insert(self._anonymous, session, now)
        return value, session

    def find(self, cookie_value: str | None) -> Session | None:
        """The live session behind a cookie value, its idle clock restarted; None when unknown,
        ended, idle too long or past its lifetime."""
        if not cookie_value:
            return None
        key = _digest(cookie_value)
        now = self._clock()
        for table in (self._signed_in, self._anonymous):
            session = table.get(key)
            if session is None:
                continue
            if self._expired(session, now):
                self._drop(table, session)
                return None
            session.last_seen_at = now
            table.move_to_end(key)
            return session
        return None

    def sign_in(self, session: Session, user: SignedIn) -> tuple[str, Session]:
        """Moves a session's owner to a fresh signed-in session under a new cookie value (the
        old value stops working at once); pending sign-ins are not carried over."""
        self.end(session)
        now = self._clock()
        value, fresh = self._new(now)
        fresh.user = user
        self._insert(self._signed_in, fresh, now)
        return value, fresh

    def end(self, session: Session) -> None:
        session.ended = True
        self._anonymous.pop(session.key, None)
        self._signed_in.pop(session.key, None)

    def add_pending(self, session: Session, pending: PendingLogin) -> None:
        session.pending[pending.state] = pending
        while len(session.pending) > MAX_PENDING:
            session.pending.popitem(last=False)

    def take_pending(self, session: Session, state: str) -> PendingLogin | None:
        """The pending sign-in named by ``state``, removed (single use); None when unknown or
        older than ``login_ttl``."""
        pending = session.pending.pop(state, None)
        if pending is None or self._clock() - pending.created_at > self.login_ttl:
            return None
        return pending

    # -- internals --------------------------------------------------------------------------

    def _new(self, now: float) -> tuple[str, Session]:
        value = secrets.token_urlsafe(32)
        session = Session(
            key=_digest(value),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
        return value, session

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen_at >= self.idle_ttl or now - session.created_at >= self.ttl

    def _drop(self, table: OrderedDict[bytes, Session], session: Session) -> None:
        session.ended = True
        table.pop(session.key, None)

    def _insert(self, table: OrderedDict[bytes, Session], session: Session, now: float) -> None:
        # The least recently used come first: the idle ones among them are expired.
        while table:
            oldest = next(iter(table.values()))
            if not self._expired(oldest, now):
                break
            self._drop(table, oldest)
        while len(table) >= self.max_sessions:
            _, oldest = table.popitem(last=False)
            oldest.ended = True
            self.evicted += 1
        table[session.key] = session
