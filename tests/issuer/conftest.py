"""In-process issuer for fast tests: the real Starlette app on a temporary database, once on a
SQLite file and once on a fresh PostgreSQL database (``issuer_database_url``, tests/conftest.py).

``TestClient`` used as a context manager runs the app's lifespan, so this is the same app
``issuer serve`` runs, minus the socket. The clock is a ``FakeClock`` unless a test asks otherwise.

One fixture system: ``make_app`` builds apps (several share one database, like replicas), ``app``
is the first; ``client``, ``accounts`` and ``demo`` are views of that same ``app`` for tests that
speak plain HTTP to it (its test client, its account store, a seeded client and user).
"""

from __future__ import annotations

import base64
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import Engine

with warnings.catch_warnings():  # starlette nags about httpx; the test client works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from issuer import engines
from issuer.accounts import AccountStore
from issuer.app import create_app
from issuer.container import Issuer
from issuer.db import init_schema
from issuer.engines import make_engine
from issuer.refresh import RefreshTokenStore
from issuer.settings import IssuerSettings
from shared.clock import Clock, FakeClock
from shared.keys import PUBLIC_EXPONENT, RSA_KEY_SIZE
from tests.support.pg_pool import SchemaPool
from tests.support.postgres import PostgresServer
from tests.support.redeem import Redeemer

ISSUER = "http://issuer.test"
SECRET_KEY = "test-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class Creds:
    client_id: str
    client_secret: str

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.client_id, self.client_secret)


@dataclass
class App:
    http: TestClient
    clock: Clock
    settings: IssuerSettings
    users: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> Issuer:
        issuer: Issuer = self.http.app_state["issuer"]  # the lifespan state
        return issuer

    def advance(self, seconds: float) -> None:
        assert isinstance(self.clock, FakeClock)
        self.clock.advance(seconds)

    def new_client(
        self,
        *,
        scope: str = "photos:read photos:write",
        audiences: Sequence[str] = ("photos",),
        grants: Sequence[str] = ("client_credentials", "password", "refresh_token"),
        client_id: str | None = None,
    ) -> Creds:
        client, secret = self.issuer.tokens.accounts.create_client(
            name="test",
            scopes=frozenset(scope.split()),
            audiences=list(audiences),
            grant_types=list(grants),
            now=self.clock(),
            client_id=client_id,
        )
        return Creds(client.client_id, secret)

    def new_user(
        self, username: str, scope: str = "photos:read photos:write", *, password: str = PASSWORD
    ) -> str:
        user = self.issuer.tokens.accounts.create_user(
            username=username, password=password, scopes=frozenset(scope.split()), now=self.clock()
        )
        return user.user_id

    def post(
        self,
        path: str,
        data: Mapping[str, str] | None = None,
        *,
        creds: Creds | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = dict(creds.auth if creds else {})
        all_headers.update(headers or {})
        return self.http.post(path, data=data, headers=all_headers, **kwargs)

    def token(self, creds: Creds, **form: str) -> httpx.Response:
        return self.post("/token", form, creds=creds)

    def login(self, creds: Creds, username: str, **form: str) -> dict[str, Any]:
        response = self.token(
            creds, grant_type="password", username=username, password=PASSWORD, **form
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def refresh(self, creds: Creds, refresh_token: str, **form: str) -> httpx.Response:
        return self.token(creds, grant_type="refresh_token", refresh_token=refresh_token, **form)

    def introspect(self, creds: Creds, token: str) -> dict[str, Any]:
        response = self.post("/introspect", {"token": token}, creds=creds)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def audit_events(self) -> list[str]:
        return [e.event for e in self.issuer.tokens.audit.recent(1000)]


@pytest.fixture(autouse=True)
def one_connection_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every in-process issuer runs on a one-connection pool that gives up after 2 s.

    So any code path that holds a connection while asking the pool for another (which
    deadlocks a loaded server once every pooled connection waits on the first one's lock)
    fails here at once instead of under load in production.
    """
    monkeypatch.setattr(engines, "POOL_TIMEOUT", 2.0)


def settings_for(database_url: str, **overrides: Any) -> IssuerSettings:
    base = IssuerSettings(
        issuer_url=ISSUER,
        database_url=database_url,
        database_pool_size=1,
        secret_key=SECRET_KEY,
        key_refresh_interval=3600,
    )
    return IssuerSettings(**{**base.__dict__, **overrides})


MakeApp = Callable[..., App]


# -- speed: a schema made once per worker, RSA keys generated once per worker ---------------
#
# Every in-process test builds at least one issuer on a database of its own. Two things that
# build costs, and that no test here is about, are made once and copied: the schema (the
# migrations themselves are tested in test_migrations.py, on empty databases) and the RSA key
# pairs (generating and loading them is tested in tests/shared and by every process the e2e tier
# starts). The issuer still creates, seals, stores, unseals and loads every key itself; only the
# prime search and the PEM's consistency check are skipped.


@pytest.fixture(scope="session")
def sqlite_schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest migration, to copy (one per pytest-xdist worker)."""
    path = tmp_path_factory.mktemp("schema") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        init_schema(engine)
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def postgres_schema_template(postgres_server: PostgresServer) -> str:
    """A database at the newest migration on the worker's server, for CREATE DATABASE ...
    TEMPLATE (left without connections, as PostgreSQL requires)."""
    name = "keyhouse_schema_template"
    engine = make_engine(postgres_server.create_database(name))
    try:
        init_schema(engine)
    finally:
        engine.dispose()
    return name


@pytest.fixture(scope="session")
def postgres_schema_pool(
    postgres_server: PostgresServer, postgres_schema_template: str
) -> SchemaPool:
    """Copies of the template, emptied after a test and reused by the next when nothing of the
    test can remain in them (tests/support/pg_pool.py)."""
    return SchemaPool(postgres_server, postgres_schema_template)


@pytest.fixture
def issuer_schema_url(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> Iterator[str]:
    """Like ``issuer_database_url`` (both backends), but already at the newest migration: the
    app's own ``init_schema`` at start finds nothing to do. PostgreSQL: a database of the
    worker's pool, as a fresh copy of the template reads."""
    if database_backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_schema_template")
        shutil.copyfile(template, tmp_path / "issuer.db")
        yield f"sqlite:///{tmp_path}/issuer.db"
        return
    pool: SchemaPool = request.getfixturevalue("postgres_schema_pool")
    name = pool.acquire()
    try:
        yield pool.server.url_for(name)
    finally:
        pool.release(name)


_KEY_POOL: list[rsa.RSAPrivateKey] = []  # this worker's generated key pairs, reused by each test
_LOADED: dict[bytes, Any] = {}  # PEM -> the key it loaded to, for this worker's keys
_KEYS_LOCK = threading.Lock()


@pytest.fixture(autouse=True)
def reused_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here (autouse: the key administration, CLI and events tests generate some
    110 key pairs a run, ~70 ms of CPU each; a subprocess the test starts is not affected).

    RSA key generation hands out this worker's earlier key pairs, in order, one each: the
    keys within one test are all distinct (a new pair is generated when the test has used every
    earlier one), and tests on separate databases reuse the same pairs. Loading a private key
    from a PEM this worker has loaded before returns the key it loaded to (the PEM parse checks
    the RSA key's consistency, which costs as much as the rest of an issuer's start)."""
    real_generate = rsa.generate_private_key
    real_load = serialization.load_pem_private_key
    handed_out = 0

    def generate(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
        nonlocal handed_out
        if (public_exponent, key_size) != (PUBLIC_EXPONENT, RSA_KEY_SIZE):
            return real_generate(public_exponent=public_exponent, key_size=key_size)
        with _KEYS_LOCK:
            if handed_out == len(_KEY_POOL):
                _KEY_POOL.append(real_generate(public_exponent=public_exponent, key_size=key_size))
            handed_out += 1
            return _KEY_POOL[handed_out - 1]

    def load(data: bytes, password: bytes | None, *args: Any, **kwargs: Any) -> Any:
        if password is not None or args or kwargs:
            return real_load(data, password, *args, **kwargs)
        with _KEYS_LOCK:
            known = _LOADED.get(bytes(data))
        if known is None:
            known = real_load(data, None)  # raises for a bad PEM: nothing is remembered
            with _KEYS_LOCK:
                _LOADED[bytes(data)] = known
        return known

    monkeypatch.setattr(rsa, "generate_private_key", generate)
    monkeypatch.setattr(serialization, "load_pem_private_key", load)


@pytest.fixture
def make_app(issuer_schema_url: str, reused_rsa_keys: None) -> Iterator[MakeApp]:
    """``make_app(clock=..., **settings)``: several calls share one database (like replicas)."""
    opened: list[TestClient] = []

    def make(*, clock: Clock | None = None, **overrides: Any) -> App:
        the_clock = clock if clock is not None else FakeClock()
        settings = settings_for(issuer_schema_url, **overrides)
        http = TestClient(create_app(settings, clock=the_clock), base_url=ISSUER)
        http.__enter__()
        opened.append(http)
        return App(http=http, clock=the_clock, settings=settings)

    yield make
    for http in reversed(opened):
        http.__exit__(None, None, None)


@pytest.fixture
def app(make_app: MakeApp) -> App:
    return make_app()


# -- the same app as plain HTTP: its test client, its accounts, a seeded client and user -------


@pytest.fixture
def client(app: App) -> TestClient:
    return app.http


@pytest.fixture
def accounts(app: App) -> AccountStore:
    return app.issuer.tokens.accounts


@pytest.fixture
def demo(app: App) -> dict[str, str]:
    """Client ``c1`` (every grant; photos, and the admin API on audience ``issuer``) and user
    ``alice`` (password ``alice-password``, photos:read)."""
    creds = app.new_client(
        scope="photos:read photos:write issuer:admin",
        audiences=("photos", "issuer"),
        client_id="c1",
    )
    app.new_user("alice", "photos:read", password="alice-password")
    return {"client_id": creds.client_id, "client_secret": creds.client_secret}


@pytest.fixture
def store(engine: Engine) -> RefreshTokenStore:
    """The refresh-token store on a module's ``engine`` fixture (family 1,000 s, idle 500 s); a
    module that needs more set up defines its own."""
    return RefreshTokenStore(engine, ttl=1000, idle_ttl=500)


@pytest.fixture
def redeem(store: RefreshTokenStore) -> Iterator[Redeemer]:
    """``RefreshTokenStore.redeem`` on one event loop for the ``store`` fixture: with
    ``SuccessorTerms`` PostgreSQL batches the rotation (tests/support/redeem.py)."""
    with Redeemer(store) as redeemer:
        yield redeemer
