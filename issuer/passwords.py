"""User passwords: argon2id (RFC 9106) through argon2-cffi, with a dummy hash for unknown users."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

logger = logging.getLogger("keyhouse.issuer.passwords")

# argon2id at RFC 9106's second recommended cost (3 passes over 64 MiB) in one lane instead of
# the profile's four. Lanes only help when that many cores work on one check; the issuer gives a
# check one thread at idle priority beside the event loop, and each extra lane started a thread
# of its own 12 times per check, which measurably delayed the loop (/healthz p99 beside two
# idle-priority argon2 loops: ~3 ms with one lane, ~5-6 ms with four, same machine, alternated).
PARAMETERS = dataclasses.replace(profiles.RFC_9106_LOW_MEMORY, parallelism=1)
_hasher = PasswordHasher.from_parameters(PARAMETERS)
# Verifying against this costs what verifying a real hash costs, so an unknown username
# takes as long as a wrong password. A hash of "keyhouse-dummy-password-for-timing" made once
# with PARAMETERS and written here: hashing it at import cost every `issuer` command ~0.3 s of
# CPU. tests/issuer/test_passwords.py checks it still has PARAMETERS' cost.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=1$IiOPE+4uba/A6F0W9Ahtxg"
    "$pBiyU9WnxB48l8hS7DoVXkKJ5hnH0nz9R/f6jgZTTTo"
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check: always runs one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True for a hash made with other parameters (an older release's four lanes): rehash it
    at the next successful login so every account costs the same to check."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return False


T = TypeVar("T")
# Each argon2id check takes 64 MiB and a core's worth of work: an unbounded number at once
# would crowd the event loop, and a login flood could exhaust memory. Logins beyond this many
# wait their turn; everything else keeps being served.
CHECKS_AT_ONCE = 2
# Where idle scheduling is unavailable, how much lower than the event loop's the login
# threads' CPU priority is (Linux nice steps).
NICENESS = 10
# The password threads' guaranteed share (see FairShare): how often the event loop looks, over
# how long a span it counts, the longest it pauses at once and the shortest pause worth a sleep
# (what the threads are owed below that is carried over to the next look).
TICK_SECONDS = 0.004
WINDOW_SECONDS = 0.1
MAX_PAUSE_SECONDS = 0.05
MIN_PAUSE_SECONDS = 0.0005
# A pause in which the threads ran less than this fraction of it went to someone else (another
# process: idle priority yields to everyone): the longest pause is halved, down to the shortest.
# One in which they ran more than twice that doubles it back, up to MAX_PAUSE_SECONDS.
USELESS_PAUSE = 0.25


def run_only_when_idle(fallback_niceness: int = NICENESS) -> str | None:
    """Schedule the calling thread, and the threads argon2 starts from it, only on CPU time
    nothing else wants (Linux ``SCHED_IDLE``): a request that arrives while a password is being
    hashed gets the core at once. Where that policy is unavailable, lower the thread's priority
    by ``fallback_niceness`` nice steps instead (Linux threads each have their own).

    A raised nice value is not enough under Linux's EEVDF scheduler: ``perf sched`` showed the
    event loop runnable yet waiting ~3.6 ms at a time for the hashing threads' slices.

    Never raises. None when the thread runs at idle priority; otherwise what it got instead and
    why, for the caller to log.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
        return None
    except (AttributeError, OSError) as exc:
        idle_refused = _reason(exc)
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + fallback_niceness
        )
    except (AttributeError, OSError) as exc:  # no per-thread priorities here
        return (
            f"cannot lower the password threads' priority (idle scheduling: {idle_refused}; "
            f"nice: {_reason(exc)}): they hash at normal priority, beside the event loop"
        )
    return (
        f"cannot schedule the password threads at idle priority ({idle_refused}): they run "
        f"{fallback_niceness} nice steps lower instead, which delays the event loop more"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AttributeError):
        return "not available on this platform"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def fair_share(checks: int) -> float:
    """The share of one core that ``checks`` password checks in progress are owed: what they
    would get at normal priority beside a busy event loop, one equal part each (1/2 of a core
    for one check, 2/3 for two)."""
    running = min(checks, CHECKS_AT_ONCE)
    return running / (running + 1) if running > 0 else 0.0


class FairShare:
    """How long the event loop should pause so that the password threads get their share.

    The threads run at idle priority, so a loop with work always comes first; a loop that never
    runs out of work (a flood of cheap requests, a steady token load) would starve them for as
    long as it lasts. While checks are in progress the loop calls :meth:`pause_for` every few
    milliseconds with the threads' CPU time so far. Between two calls the threads are owed
    ``share`` of the time that passed; what they are short of adds up (a surplus, from an idle
    core or another core, counts against it), and the answer is the pause that makes up for it
    if they get the core meanwhile (at most ``max_pause``). When they got their share, the
    answer is 0 and nothing changes. The loop never pauses for more than ``share`` of its time,
    and pauses that go to some other process rather than to the hashing (a host busy with other
    work, where an idle-priority thread gets nothing) shrink until they help again: halved each
    time, down to ``min_pause``. Neither a debt nor a surplus is remembered beyond ``window``
    seconds' worth of the share.

    Pure arithmetic on the numbers it is given (the tests drive it with made-up clocks).
    """

    def __init__(
        self,
        *,
        window: float = WINDOW_SECONDS,
        max_pause: float = MAX_PAUSE_SECONDS,
        min_pause: float = MIN_PAUSE_SECONDS,
    ) -> None:
        self.window = window
        self.max_pause = max_pause
        self.min_pause = min_pause
        self._last: tuple[float, float, float] | None = None  # time, CPU, paused at the last call
        self._paused = 0.0  # the loop's pauses, all told
        self._short = 0.0  # CPU seconds the threads are owed (negative: a surplus)
        self._overpaused = 0.0  # seconds the loop paused beyond its share (negative: may pause)
        self.limit = max_pause  # the longest pause now (shrinks while pauses do not help)

    def reset(self) -> None:
        """Checks are in progress again after none were: count afresh from the next call."""
        self._last = None
        self._short = self._overpaused = 0.0

    def pause_for(self, now: float, cpu: float, share: float) -> float:
        """Seconds the loop should pause now (0: none), given the threads' CPU seconds."""
        last, self._last = self._last, (now, cpu, self._paused)
        if last is None:
            return 0.0
        elapsed = now - last[0]
        limit = share * self.window
        self._short = _clamp(self._short + share * elapsed - (cpu - last[1]), limit)
        self._overpaused = _clamp(
            self._overpaused + (self._paused - last[2]) - share * elapsed, limit
        )
        # A pause p lengthens the time by p as well, of which the threads are owed share * p:
        # they are even after p = short / (1 - share), if they get the whole pause.
        stretch = 1.0 / (1.0 - share) if share < 1.0 else math.inf
        pause = min(self._short * stretch, -self._overpaused * stretch, self.limit)
        return pause if pause >= self.min_pause else 0.0

    def paused(self, seconds: float, gained: float) -> None:
        """The loop paused ``seconds`` (what it really slept, which may exceed what it asked),
        and the threads ran ``gained`` CPU seconds meanwhile."""
        self._paused += seconds
        if gained < USELESS_PAUSE * seconds:
            self.limit = max(self.min_pause, self.limit / 2)
        elif gained > 2 * USELESS_PAUSE * seconds:
            self.limit = min(self.max_pause, self.limit * 2)


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


class PasswordPool:
    """A few dedicated threads that run only when the CPU is otherwise idle, for password checks,
    with a guaranteed share of a core while checks are waiting.

    Give them the argon2 call and nothing else: code holding the interpreter lock in one of
    these threads makes the event loop wait for a thread the kernel runs last. Not anyio's
    shared worker threads: those run the database calls for every request, and a thread's
    priority cannot be raised back without privileges.

    Idle priority alone lets a loop that is never idle hold every login off (a closed-loop flood
    of ``/healthz`` let none through in 15 s). So while checks are in progress, the loop looks
    every ``tick`` seconds at the CPU time the password threads got (their per-thread CPU
    clocks) and, when they got less than :func:`fair_share` of a core, pauses (sleeps) for what
    they are short of: see :class:`FairShare`. Unprivileged and exact, where raising the
    threads' priority for a while would need ``CAP_SYS_NICE`` to undo idle scheduling. ``cpu_time``,
    ``clock`` and ``pause`` are for the tests.
    """

    def __init__(
        self,
        workers: int = CHECKS_AT_ONCE,
        *,
        cpu_time: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
        tick: float = TICK_SECONDS,
        share: FairShare | None = None,
    ) -> None:
        self._clocks: list[int] = []  # the threads' CPU-time clock ids
        self._priority_reported = False  # a thread that kept a higher priority was logged
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="keyhouse-password",
            initializer=self._thread_started,
        )
        self._cpu_time = cpu_time or self.threads_cpu_time
        self._clock = clock
        self._pause = pause
        self._tick_seconds = tick
        self._share = share or FairShare()
        # Checks submitted and not finished (waiting for a thread included), counted by the
        # threads themselves: a caller that stops waiting does not stop its check.
        self._in_progress = 0
        self._count_lock = threading.Lock()
        self._ticking: asyncio.TimerHandle | None = None
        self._ticking_loop: asyncio.AbstractEventLoop | None = None

    def _thread_started(self) -> None:
        problem = run_only_when_idle()
        if problem is not None:
            with self._count_lock:
                first, self._priority_reported = not self._priority_reported, True
            if first:  # the same for every thread: said once
                logger.warning("%s", problem)
        # Without per-thread CPU clocks (not Linux or BSD) there is no guaranteed share.
        with contextlib.suppress(AttributeError, OSError):
            self._clocks.append(time.pthread_getcpuclockid(threading.get_ident()))

    def threads_cpu_time(self) -> float | None:
        """CPU seconds the password threads have run, all together; None where unknown."""
        if not self._clocks:
            return None
        total = 0.0
        for clock_id in list(self._clocks):
            with contextlib.suppress(OSError):
                total += time.clock_gettime(clock_id)
        return total

    @property
    def in_progress(self) -> int:
        """Checks submitted and not finished yet."""
        return self._in_progress

    async def run(self, func: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        with self._count_lock:
            self._in_progress += 1
            first = self._in_progress == 1
        try:
            future = self._executor.submit(func)
        except BaseException:
            self._finished()
            raise
        future.add_done_callback(self._finished)  # in the thread, or here if already done
        if first or self._ticking_loop is not loop:
            self._start_ticking(loop)
        return await asyncio.wrap_future(future)

    def _finished(self, _future: object = None) -> None:
        with self._count_lock:
            self._in_progress -= 1

    def _start_ticking(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
        self._share.reset()
        self._ticking_loop = loop
        self._ticking = loop.call_later(self._tick_seconds, self._tick)

    def _tick(self) -> None:
        in_progress = self._in_progress
        if in_progress <= 0:
            self._ticking = self._ticking_loop = None
            return
        cpu = self._cpu_time()
        pause = 0.0
        if cpu is not None:  # unknown (no per-thread CPU clocks): no guaranteed share
            pause = self._share.pause_for(self._clock(), cpu, fair_share(in_progress))
        if cpu is not None and pause > 0:
            # Blocks the event loop on purpose: the password threads get the core meanwhile.
            started = self._clock()
            self._pause(pause)
            slept = self._clock() - started
            self._share.paused(slept, (self._cpu_time() or cpu) - cpu)
        assert self._ticking_loop is not None
        self._ticking = self._ticking_loop.call_later(self._tick_seconds, self._tick)

    def close(self) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
            self._ticking = self._ticking_loop = None
        self._executor.shutdown(wait=True, cancel_futures=True)
