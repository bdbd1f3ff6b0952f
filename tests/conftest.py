from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from issuer import passwords
from tests.support.pg_fixture import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.support.postgres import PostgresServer
from tests.support.processes import Stack
from tests.support.schedule import longest_first


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's --dist loadfile hands out files by how many tests each holds unless told
    # to keep the collection order, which pytest_collection_modifyitems below makes longest
    # first (tests/support/schedule.py).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # only the order of parallel runs matters
        longest_first(items)


# The in-process tiers hash and check passwords at argon2id's lowest cost (one pass over 8 KiB):
# at the issuer's (three passes over 64 MiB, ~0.25 s of CPU each) they spent most of their time
# there. Tests about the cost, the timing of a check or the password threads' share of the CPU
# are marked ``password_cost`` and keep the real one; so do the end-to-end tiers (``e2e``: the
# users their commands create are checked by server processes at the real cost).
CHEAP_PASSWORDS = PasswordHasher.from_parameters(
    dataclasses.replace(passwords.PARAMETERS, time_cost=1, memory_cost=8)
)
CHEAP_DUMMY_HASH = CHEAP_PASSWORDS.hash("keyhouse-dummy-password-for-timing")


@pytest.fixture(autouse=True)
def _cheap_password_hashing(request: pytest.FixtureRequest) -> Iterator[None]:
    node = request.node
    if node.get_closest_marker("password_cost") or node.get_closest_marker("e2e"):
        yield
        return
    with pytest.MonkeyPatch.context() as m:
        m.setattr(passwords, "_hasher", CHEAP_PASSWORDS)
        m.setattr(passwords, "_DUMMY_HASH", CHEAP_DUMMY_HASH)
        yield


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once per database backend: ``sqlite`` and ``postgres``."""
    return str(request.param)


@pytest.fixture
def issuer_database_url(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> Iterator[str]:
    """The issuer's ISSUER_DATABASE_URL, once per backend: a SQLite file in tmp_path, and a fresh
    database on the session's throwaway PostgreSQL server (dropped afterwards). Empty."""
    if database_backend == "sqlite":
        yield f"sqlite:///{tmp_path}/issuer.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:20]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for a whole module, for tests that only read from it."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield s
    finally:
        s.stop_all()
