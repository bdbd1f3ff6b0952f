"""Logins are hashed a bounded number at a time, off the event loop."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import issuer.accounts
from issuer.passwords import CHECKS_AT_ONCE, NICENESS, lower_thread_priority
from tests.issuer.conftest import App


def test_at_most_n_password_checks_at_once(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = app.new_client()
    app.new_user("alice")
    real = issuer.accounts.verify_password
    lock = threading.Lock()
    running = 0
    peak = 0
    overlap = threading.Event()

    def spy(password_hash: str | None, password: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running >= CHECKS_AT_ONCE:
                overlap.set()
        try:
            overlap.wait(timeout=2)  # hold the slot until the checks really overlap
            return real(password_hash, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(issuer.accounts, "verify_password", spy)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: app.login(creds, "alice"), range(8)))
    assert all("access_token" in r for r in results)
    assert peak == CHECKS_AT_ONCE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_password_checks_run_at_lower_cpu_priority(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 runs (and spawns its lanes) in threads the kernel preempts for the event loop."""
    creds = app.new_client()
    app.new_user("alice")
    real = issuer.accounts.verify_password
    seen: list[int] = []

    def spy(password_hash: str | None, password: str) -> bool:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(password_hash, password)

    monkeypatch.setattr(issuer.accounts, "verify_password", spy)
    loop_priority = os.getpriority(os.PRIO_PROCESS, 0)
    assert "access_token" in app.login(creds, "alice")
    assert seen == [min(19, loop_priority + NICENESS)]
    # Other blocking work (database calls) stays at normal priority.
    app.token(creds, grant_type="client_credentials")
    assert os.getpriority(os.PRIO_PROCESS, 0) == loop_priority


def test_lower_thread_priority_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(os, "setpriority", refuse)
    lower_thread_priority(5)  # a platform without per-thread priority runs at normal priority
