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
# Each argon2id check takes 64 MiB and several threads of its own (the profile's parallelism):
# an unbounded number at once would starve the event loop, and a login flood could exhaust
# memory. Logins beyond this many wait their turn; everything else keeps being served.
CHECKS_AT_ONCE = 2
# How much lower than the event loop's the login threads' CPU priority is (Linux nice steps).
# argon2's own threads inherit it, so a running request is never queued behind hashing for
# long: the kernel hands the core back to the loop as soon as it has work.
NICENESS = 10


def lower_thread_priority(step: int) -> None:
    """Raise the calling thread's nice value by ``step`` (Linux threads each have their own)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + step)
    except (AttributeError, OSError):  # no per-thread priorities here: run at normal priority
        pass


class PasswordPool:
    """A few dedicated threads, at a lowered priority, for work that checks passwords.

    Not anyio's shared worker threads: those also run quick database calls for every other
    request, and a thread's priority cannot be raised back without privileges.
    """

    def __init__(self, workers: int = CHECKS_AT_ONCE, niceness: int = NICENESS) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="keyhouse-password",
            initializer=lower_thread_priority,
            initargs=(niceness,),
        )

    async def run(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
