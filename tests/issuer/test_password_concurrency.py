"""Logins are hashed a bounded number at a time, off the event loop."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

import issuer.accounts
from issuer.passwords import CHECKS_AT_ONCE, NICENESS, run_only_when_idle
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


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_password_checks_run_only_on_idle_cpu(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 runs (and spawns its lanes) in threads the kernel runs only when nothing else
    wants the CPU, so the event loop never queues behind hashing."""
    creds = app.new_client()
    app.new_user("alice")
    real = issuer.accounts.verify_password
    seen: list[int] = []

    def spy(password_hash: str | None, password: str) -> bool:
        seen.append(os.sched_getscheduler(0))
        return real(password_hash, password)

    monkeypatch.setattr(issuer.accounts, "verify_password", spy)
    loop_policy = os.sched_getscheduler(0)
    assert "access_token" in app.login(creds, "alice")
    assert seen == [os.SCHED_IDLE]
    # Other blocking work (database calls) stays at normal priority.
    app.token(creds, grant_type="client_credentials")
    assert os.sched_getscheduler(0) == loop_policy != os.SCHED_IDLE


def test_logins_touch_the_database_outside_the_password_threads(app: App) -> None:
    """A password thread holding the interpreter lock for database work would make the event
    loop wait on a thread the kernel runs last: only the argon2 check may run there."""
    creds = app.new_client()
    app.new_user("alice")
    threads: list[str] = []
    engine = app.issuer.keyring.repo.engine

    def record(*_: object) -> None:
        threads.append(threading.current_thread().name)

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert "access_token" in app.login(creds, "alice")
        wrong = app.token(creds, grant_type="password", username="alice", password="wrong")
        unknown = app.token(creds, grant_type="password", username="bob", password="wrong")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert wrong.status_code == unknown.status_code == 400
    assert threads  # the logins did read and write (user, refresh token, audit, throttle)
    assert not [name for name in threads if name.startswith("keyhouse-password")]


def test_password_threads_fall_back_to_a_lower_nice_value(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    seen: list[tuple[int, int]] = []

    def check() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        run_only_when_idle(NICENESS)
        seen.append((before, os.getpriority(os.PRIO_PROCESS, tid)))

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    [(before, after)] = seen
    assert after == min(19, before + NICENESS)


def test_run_only_when_idle_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    monkeypatch.setattr(os, "setpriority", refuse)
    run_only_when_idle()  # a platform without per-thread priorities runs at normal priority
