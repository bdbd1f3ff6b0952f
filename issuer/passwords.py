"""User passwords: argon2id (RFC 9106) through argon2-cffi, with a dummy hash for unknown users."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2id at RFC 9106's second recommended cost (3 passes over 64 MiB) in one lane instead of
# the profile's four. Lanes only help when that many cores work on one check; the issuer gives a
# check one thread at idle priority beside the event loop, and each extra lane started a thread
# of its own 12 times per check, which measurably delayed the loop (/healthz p99 beside two
# idle-priority argon2 loops: ~3 ms with one lane, ~5-6 ms with four, same machine, alternated).
PARAMETERS = dataclasses.replace(profiles.RFC_9106_LOW_MEMORY, parallelism=1)
_hasher = PasswordHasher.from_parameters(PARAMETERS)
# Verifying against this costs what verifying a real hash costs, so an unknown username
# takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("keyhouse-dummy-password-for-timing")


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


def run_only_when_idle(fallback_niceness: int = NICENESS) -> None:
    """Schedule the calling thread, and the threads argon2 starts from it, only on CPU time
    nothing else wants (Linux ``SCHED_IDLE``): a request that arrives while a password is being
    hashed gets the core at once. Where that policy is unavailable, lower the thread's priority
    by ``fallback_niceness`` nice steps instead (Linux threads each have their own).

    A raised nice value is not enough under Linux's EEVDF scheduler: ``perf sched`` showed the
    event loop runnable yet waiting ~3.6 ms at a time for the hashing threads' slices.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
        return
    except (AttributeError, OSError):
        pass
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + fallback_niceness
        )
    except (AttributeError, OSError):  # no per-thread priorities here: run at normal priority
        pass


class PasswordPool:
    """A few dedicated threads that run only when the CPU is otherwise idle, for password checks.

    Give them the argon2 call and nothing else: code holding the interpreter lock in one of
    these threads makes the event loop wait for a thread the kernel runs last. Not anyio's
    shared worker threads: those run the database calls for every request, and a thread's
    priority cannot be raised back without privileges.
    """

    def __init__(self, workers: int = CHECKS_AT_ONCE) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="keyhouse-password",
            initializer=run_only_when_idle,
        )

    async def run(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
