"""User passwords: argon2id (RFC 9106) through argon2-cffi, with a dummy hash for unknown users."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 "low memory" profile
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
