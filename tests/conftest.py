from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg_fixture import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.support.postgres import PostgresServer
from tests.support.processes import Stack


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``--dist loadgroup`` (scripts/test): the tests of a module that share
    a module- or class-scoped fixture (one stack of processes for the module, say) run on one
    worker, so that fixture is set up once; every other test goes wherever a worker is free."""
    if not config.getoption("loadgroup", default=False):
        return
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs}
        if scopes & {"module", "class", "package"}:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


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
