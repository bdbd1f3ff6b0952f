"""Logins are hashed a bounded number at a time, off the event loop."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import issuer.accounts
from issuer.token_service import PASSWORD_CHECKS_AT_ONCE
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
            if running >= PASSWORD_CHECKS_AT_ONCE:
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
    assert peak == PASSWORD_CHECKS_AT_ONCE
