"""Password hashing parameters, and moving hashes made with older ones to today's at login."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading

import pytest
from argon2 import PasswordHasher, extract_parameters, profiles
from sqlalchemy import select, update

from issuer import passwords
from issuer.db import users
from issuer.passwords import (
    PARAMETERS,
    PasswordPool,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.issuer.conftest import PASSWORD, App

pytestmark = pytest.mark.password_cost  # the cost itself is the subject

# What releases before 0.1.3 stored: argon2-cffi's RFC 9106 low-memory profile, four lanes.
OLD_HASHER = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
DUMMY_PASSWORD = "keyhouse-dummy-password-for-timing"


def test_new_hashes_are_argon2id_64_mib_3_passes_one_lane() -> None:
    params = extract_parameters(hash_password("s3cret"))
    assert params == PARAMETERS
    assert (params.type.name, params.memory_cost, params.time_cost, params.parallelism) == (
        "ID",
        64 * 1024,
        3,
        1,
    )


def test_an_unknown_user_costs_one_check_at_todays_parameters() -> None:
    """The dummy hash an unknown username is checked against is written in the source: it must
    be a real hash with today's parameters, or an unknown user would answer faster."""
    dummy = passwords._DUMMY_HASH
    assert extract_parameters(dummy) == PARAMETERS
    assert not needs_rehash(dummy)
    assert PasswordHasher.from_parameters(PARAMETERS).verify(dummy, DUMMY_PASSWORD)
    assert verify_password(None, DUMMY_PASSWORD) is False  # checked against it, never accepted


def test_hashes_from_older_releases_still_verify() -> None:
    old = OLD_HASHER.hash("s3cret")
    assert verify_password(old, "s3cret") is True
    assert verify_password(old, "wrong") is False


@pytest.mark.parametrize(
    ("password_hash", "expected"),
    [
        (OLD_HASHER.hash("s3cret"), True),
        (hash_password("s3cret"), False),
        ("not a hash", False),
        ("$argon2id$v=19$m=abc", False),
    ],
    ids=["older-release", "today", "not-a-hash", "malformed"],  # the same ids in every worker
)
def test_needs_rehash(password_hash: str, expected: bool) -> None:
    assert needs_rehash(password_hash) is expected


def _stored_hash(app: App, username: str) -> str:
    with app.issuer.tokens.accounts.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.username == username))
        return str(stored.scalar_one())


def _store_old_hash(app: App, username: str, password: str) -> str:
    old = OLD_HASHER.hash(password)
    with app.issuer.tokens.accounts.engine.begin() as conn:
        conn.execute(update(users).where(users.c.username == username).values(password_hash=old))
    return old


def test_login_moves_an_old_hash_to_todays_parameters(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    old = _store_old_hash(app, "alice", PASSWORD)

    assert "access_token" in app.login(creds, "alice")
    new = _stored_hash(app, "alice")
    assert new != old
    assert extract_parameters(new) == PARAMETERS
    assert verify_password(new, PASSWORD)
    assert "access_token" in app.login(creds, "alice")  # and the new hash logs in
    assert _stored_hash(app, "alice") == new  # without being rehashed again


def test_a_failed_login_leaves_an_old_hash_alone(app: App) -> None:
    creds = app.new_client()
    app.new_user("alice")
    old = _store_old_hash(app, "alice", PASSWORD)

    refused = app.token(creds, grant_type="password", username="alice", password="wrong")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert _stored_hash(app, "alice") == old


def test_the_rehash_never_overwrites_a_password_changed_meanwhile(app: App) -> None:
    app.new_user("alice")
    _store_old_hash(app, "alice", PASSWORD)
    accounts = app.issuer.tokens.accounts
    read_before_the_change = accounts.get_user("alice")
    assert read_before_the_change is not None
    changed = accounts.set_user_password("alice", "a brand new passphrase")

    assert not accounts.replace_password_hash(read_before_the_change, hash_password(PASSWORD))
    assert _stored_hash(app, "alice") == changed.password_hash


def _refuse(*_: object) -> None:
    raise PermissionError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize(
    ("refused", "expected"),
    [
        (["sched_setscheduler"], "10 nice steps lower instead"),
        (["sched_setscheduler", "setpriority"], "at normal priority"),
    ],
)
def test_a_pool_whose_threads_keep_a_higher_priority_says_so_once(
    refused: list[str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Idle scheduling refused (and the nice fallback too): one warning, with the reason,
    however many password threads start."""
    for name in refused:
        monkeypatch.setattr(os, name, _refuse, raising=False)
    caplog.set_level(logging.WARNING)
    pool = PasswordPool(cpu_time=lambda: None)  # no guaranteed share: no pauses here
    both_running = threading.Barrier(2)

    async def two_checks_at_once() -> None:
        await asyncio.gather(
            pool.run(lambda: both_running.wait(5)), pool.run(lambda: both_running.wait(5))
        )

    try:
        asyncio.run(two_checks_at_once())  # two threads started, each refused
    finally:
        pool.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "Operation not permitted" in warnings[0]
    assert expected in warnings[0]
