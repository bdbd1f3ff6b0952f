"""Deadlines and caps for the connections of one server process: the policy, without uvicorn.

A client that trickles a request head or body, or opens a connection and says nothing, holds a
socket, a file descriptor and a few kilobytes for as long as it likes: uvicorn puts no deadline
on reading a request. These classes decide, with an injected clock and no I/O:

- :class:`ConnectionLimits`: the settings (``<PREFIX>HEADER_TIMEOUT``, ``<PREFIX>BODY_TIMEOUT``,
  ``<PREFIX>MAX_CONNECTIONS``, ``<PREFIX>MAX_CONNECTIONS_PER_ADDRESS``).
- :class:`Deadline`: where one connection is in its current request (waiting for a head, reading
  the head, reading the body, busy answering) and when that wait ends.
- :class:`ConnectionTable`: the open connections of a process, counted per peer address; a new
  connection over a cap is refused (the newest is the one closed, never an established one), and
  :meth:`ConnectionTable.expired` lists the connections whose deadline has passed.
- :class:`WarningThrottle`: at most one log line per kind of event per interval, however fast the
  events come.

The uvicorn glue (``serving.protocol``) moves each connection's :class:`Deadline` along as the
parser reports a request's parts and sweeps the table a few times a second: per request that is
a few attribute stores and two reads of the loop's clock, no timer object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from shared.errors import ConfigurationError

Clock = Callable[[], float]

# A connection's phases. Deadlines run only while the server waits for the client.
IDLE = 0  # ready for a request, not one byte of it yet (new or kept-alive connection)
HEAD = 1  # part of a request head received
BODY = 2  # head complete, body not yet complete
BUSY = 3  # request complete: the application is answering (no deadline)
CLOSING = 4  # closed by a deadline; aborted if it is still there at the next one

PHASE_NAMES = {IDLE: "idle", HEAD: "head", BODY: "body", BUSY: "busy", CLOSING: "closing"}

# Refusal reasons returned by ConnectionTable.admit.
PROCESS_CAP = "process"
ADDRESS_CAP = "address"

# File descriptors kept for everything that is not a client connection (listening socket,
# database, JWKS fetches, logs, the event loop's own) when MAX_CONNECTIONS is fitted to the
# process's descriptor limit.
FD_RESERVE = 128

DEFAULTS: dict[str, str] = {
    "HEADER_TIMEOUT": "10",
    "BODY_TIMEOUT": "10",
    "MAX_CONNECTIONS": "4096",
    "MAX_CONNECTIONS_PER_ADDRESS": "256",
}


def _number(env: Mapping[str, str], prefix: str, name: str) -> float:
    var = prefix + name
    raw = env.get(var, DEFAULTS[name]).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{var} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{var} must be a positive number, got {raw!r}")
    return value


def _count(env: Mapping[str, str], prefix: str, name: str) -> int:
    var = prefix + name
    raw = env.get(var, DEFAULTS[name]).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{var} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigurationError(f"{var} must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and caps for one server process (each worker has its own).

    ``header_timeout``: seconds from the moment a connection is ready for a request (accepted, or
    the previous response sent) until that request's head is complete; an idle kept-alive
    connection is waiting for a head, so it is closed by this deadline too (or earlier, by
    uvicorn's keep-alive timeout, 5 s). ``body_timeout``: seconds from the end of the head to the
    end of the body. ``max_connections`` / ``max_connections_per_address``: open connections per
    process, in all and from one peer address; a connection beyond either is closed as soon as
    it is accepted. ``prefix`` names the variables in messages (``ISSUER_``, ``RESOURCE_``).
    """

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 4096
    max_connections_per_address: int = 256
    prefix: str = ""

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str]) -> ConnectionLimits:
        return cls(
            header_timeout=_number(env, prefix, "HEADER_TIMEOUT"),
            body_timeout=_number(env, prefix, "BODY_TIMEOUT"),
            max_connections=_count(env, prefix, "MAX_CONNECTIONS"),
            max_connections_per_address=_count(env, prefix, "MAX_CONNECTIONS_PER_ADDRESS"),
            prefix=prefix,
        )

    @property
    def sweep_interval(self) -> float:
        """How often the expired connections are looked for: a twentieth of the shorter
        deadline, at most 0.5 s (a connection is closed at most that long after its deadline)."""
        return min(0.5, max(0.01, min(self.header_timeout, self.body_timeout) / 20))

    def fit_descriptors(self, soft: int, hard: int) -> tuple[ConnectionLimits, int, str | None]:
        """Fit ``max_connections`` to the process's open-file limit (``RLIMIT_NOFILE``).

        Returns the limits to use, the soft limit to set (raised towards ``hard`` when the cap
        needs it) and a warning when the cap had to be lowered: past the descriptor limit the
        process could not accept at all, and the cap would never be what refuses.
        """
        unlimited = hard < 0  # RLIM_INFINITY (-1 here)
        want = self.max_connections + FD_RESERVE
        if soft < 0 or soft >= want:
            return self, soft, None
        new_soft = want if unlimited or hard >= want else hard
        if new_soft >= want:
            return self, new_soft, None
        fitted = max(1, new_soft - FD_RESERVE)
        message = (
            f"{self.prefix}MAX_CONNECTIONS={self.max_connections} does not fit the open-file limit"
            f" ({new_soft}); using {fitted} (raise `ulimit -n` for more)"
        )
        return replace(self, max_connections=fitted), new_soft, message


class Deadline:
    """One connection's place in its current request and the time its wait ends.

    The glue calls :meth:`head_begun` (first byte of a request), :meth:`head_done`,
    :meth:`body_done` and :meth:`response_done` as the parser and the application move on;
    ``deadline`` is ``inf`` while nothing is awaited from the client. ``owner`` is the glue's
    object for this connection.
    """

    __slots__ = ("_body", "_clock", "_head", "_idle", "address", "deadline", "owner", "phase",
                 "ready_at")  # fmt: skip

    def __init__(
        self, address: str, clock: Clock, head: float, body: float, idle: float, owner: object
    ) -> None:
        self.address = address
        self.owner = owner
        self._clock = clock
        self._head = head
        self._body = body
        self._idle = min(idle, head)
        now = clock()
        self.phase = IDLE
        self.ready_at = now
        self.deadline = now + self._idle

    def head_begun(self) -> None:
        """The first byte of a request arrived."""
        if self.phase == IDLE:
            # The head deadline runs from the moment the connection was ready for the request:
            # waiting idle counts.
            self.phase = HEAD
            self.deadline = self.ready_at + self._head
        else:
            # Pipelined behind a request still being answered: its own deadline from now (and
            # the glue does not enforce it until that answer is out).
            self.phase = HEAD
            self.deadline = self._clock() + self._head

    def head_done(self) -> None:
        self.phase = BODY
        self.deadline = self._clock() + self._body

    def body_done(self) -> None:
        self.phase = BUSY
        self.deadline = math.inf

    def response_done(self, busy: bool = False) -> None:
        """A response was sent; ``busy``: a pipelined request was started in its place."""
        phase = self.phase
        if phase == BUSY:
            if not busy:
                now = self._clock()
                self.phase = IDLE
                self.ready_at = now
                self.deadline = now + self._idle
        elif phase in (HEAD, BODY):
            # Part of a later request arrived while this one was answered, and reading may
            # have been paused meanwhile: its wait starts over now.
            self.postpone()

    def postpone(self) -> None:
        """The client is not the one keeping this request back (the server paused reading, or
        is still answering the previous request): its current wait starts over."""
        now = self._clock()
        phase = self.phase
        if phase == IDLE:
            self.ready_at = now
            self.deadline = now + self._idle
        elif phase == HEAD:
            self.ready_at = now
            self.deadline = now + self._head
        elif phase == BODY:
            self.deadline = now + self._body

    def closing(self, grace: float) -> None:
        self.phase = CLOSING
        self.deadline = self._clock() + grace

    def detach(self) -> None:
        """Never expires (a refused connection, already closed)."""
        self.phase = BUSY
        self.deadline = math.inf


class ConnectionTable:
    """The open connections of one process, counted per peer address, with their deadlines.

    :meth:`admit` counts a new connection in, or refuses it (returning the cap it hit) without
    counting it: the connection refused is always the newest. :meth:`release` counts it out.
    """

    def __init__(self, limits: ConnectionLimits, clock: Clock, idle_timeout: float) -> None:
        self.limits = limits
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.open: set[Deadline] = set()
        self.per_address: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.open)

    def deadline(self, address: str, owner: object) -> Deadline:
        limits = self.limits
        return Deadline(
            address,
            self.clock,
            limits.header_timeout,
            limits.body_timeout,
            self.idle_timeout,
            owner,
        )

    def admit(self, address: str, owner: object) -> Deadline | str:
        """A :class:`Deadline` for a connection counted in, or the cap (``PROCESS_CAP``,
        ``ADDRESS_CAP``) that refuses it."""
        cap = self.refusal(address)
        if cap is not None:
            return cap
        self.per_address[address] = self.per_address.get(address, 0) + 1
        entry = self.deadline(address, owner)
        self.open.add(entry)
        return entry

    def refusal(self, address: str) -> str | None:
        """The cap (``PROCESS_CAP``, ``ADDRESS_CAP``) a new connection from ``address`` would
        be refused by, or None."""
        limits = self.limits
        if len(self.open) >= limits.max_connections:
            return PROCESS_CAP
        if self.per_address.get(address, 0) >= limits.max_connections_per_address:
            return ADDRESS_CAP
        return None

    def release(self, entry: Deadline) -> None:
        if entry not in self.open:
            return
        self.open.discard(entry)
        count = self.per_address[entry.address] - 1
        if count:
            self.per_address[entry.address] = count
        else:
            del self.per_address[entry.address]

    def expired(self, now: float | None = None) -> list[Deadline]:
        """The connections whose deadline is at or before ``now`` (default: the clock)."""
        if now is None:
            now = self.clock()
        return [entry for entry in self.open if entry.deadline <= now]


class WarningThrottle:
    """At most one message per ``interval`` seconds for each kind of event.

    :meth:`event` returns ``None`` when this event's message is to be left out, or the number of
    events of that kind (this one included) since the last message that went out.
    """

    def __init__(self, interval: float, clock: Clock) -> None:
        self.interval = interval
        self.clock = clock
        self._next: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def event(self, kind: str, n: int = 1) -> int | None:
        count = self._count.get(kind, 0) + n
        now = self.clock()
        if now < self._next.get(kind, -math.inf):
            self._count[kind] = count
            return None
        self._count[kind] = 0
        self._next[kind] = now + self.interval
        return count
