"""PostgreSQL's one-statement rotation (issuer/refresh.py ``_ROTATE_AT_ONCE``, taken when the
caller gives ``SuccessorTerms``): a rotation that needs nothing else is one statement, outside a
transaction block and SQLAlchemy's execution layers (issuer/db.py ``execute_autocommit``), and
writes exactly the successor the transaction path writes; every other case claims nothing there
and ends as the transaction path alone ends it (the same outcome, the same rows). Each case runs
twice on twin tokens in the same state, once with terms and once without."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Connection, Engine

from issuer.accounts import AccountStore
from issuer.db import refresh_tokens, users
from issuer.engines import make_engine
from issuer.grants import resolve_audience, resolve_scope
from issuer.refresh import RefreshGrant, RefreshTokenStore, SuccessorTerms, token_hash

pytestmark = pytest.mark.postgres

OWNER = "owner-client"
AUDIENCES = ("photos", "contacts")
T0 = 1000.0


@pytest.fixture
def database_backend() -> str:
    return "postgres"  # the one-statement rotation is PostgreSQL's


@pytest.fixture
def engine(issuer_schema_url: str) -> Iterator[Engine]:
    eng = make_engine(issuer_schema_url, pool_size=1)  # one connection: it must come back clean
    with eng.begin() as conn:
        for user_id, disabled in (("u1", False), ("u-off", True)):
            conn.execute(
                users.insert().values(
                    user_id=user_id,
                    username=user_id,
                    password_hash="-",
                    scopes="a b",
                    created_at=T0,
                    disabled=disabled,
                )
            )
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def store(engine: Engine) -> RefreshTokenStore:
    return RefreshTokenStore(engine, ttl=1000, idle_ttl=500)


@pytest.fixture
def statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def narrow_for(engine: Engine, form: dict[str, str]) -> Callable[..., tuple[frozenset[str], str]]:
    """What issuer/grants.py's narrow does for ``form``."""

    def narrow(grant: RefreshGrant, conn: Connection) -> tuple[frozenset[str], str]:
        user = AccountStore(engine).get_user_by_id(grant.user_id, conn=conn)
        if user is None or user.disabled:
            raise LookupError("no enabled user")
        return (
            resolve_scope(form.get("scope"), grant.scopes),
            resolve_audience(form, AUDIENCES, grant.audience),
        )

    return narrow


def terms_for(form: dict[str, str]) -> SuccessorTerms:
    scope = form.get("scope")
    return SuccessorTerms(
        frozenset(scope.split(" ")) if scope is not None else None, form.get("audience")
    )


def rows(engine: Engine, family_id: str) -> list[dict[str, Any]]:
    """The family's rows, without what differs between twins (hashes and the family id)."""
    with engine.connect() as conn:
        found = (
            conn.execute(
                select(refresh_tokens)
                .where(refresh_tokens.c.family_id == family_id)
                .order_by(refresh_tokens.c.created_at, refresh_tokens.c.parent_hash.is_(None))
            )
            .mappings()
            .all()
        )
    skip = {"token_hash", "family_id", "parent_hash"}
    return [{k: v for k, v in r.items() if k not in skip} for r in found]


def family_of(engine: Engine, token: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                select(refresh_tokens.c.family_id).where(
                    refresh_tokens.c.token_hash == token_hash(token)
                )
            ).scalar_one()
        )


def outcome(
    store: RefreshTokenStore, token: str, now: float, form: dict[str, str], *, fast: bool, **kw: Any
) -> tuple[object, ...]:
    try:
        r = store.rotate(
            token,
            client_id=kw.get("client_id", OWNER),
            now=now,
            narrow=narrow_for(store.engine, form),
            terms=terms_for(form) if fast else None,
        )
    except Exception as exc:  # narrow's refusals
        return ("raised", type(exc).__name__)
    return (r.status, r.scopes, r.audience, r.grant.family_id if r.grant else None)


def session_of(store: RefreshTokenStore, pid: int) -> tuple[str, str]:
    """What the server says the session ``pid`` last ran, and its state (from a session of its
    own, outside the pool)."""
    with psycopg.connect(
        store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    ) as conn:
        row = conn.execute(
            "SELECT query, state FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def login(store: RefreshTokenStore, user_id: str = "u1") -> str:
    return store.issue(
        client_id=OWNER, user_id=user_id, scopes=frozenset({"a", "b"}), audience="photos", now=T0
    )


SUCCESSES = [
    pytest.param({}, T0 + 1, id="keep"),
    pytest.param({"scope": "a"}, T0 + 1, id="narrower-scope"),
    pytest.param({"scope": "a b"}, T0 + 1, id="same-scope"),
    pytest.param({"audience": "contacts"}, T0 + 1, id="other-audience"),
    pytest.param({}, T0 + 800, id="ends-with-the-family"),  # its idle end is past the family's
]


def _hop(store: RefreshTokenStore, token: str) -> str:
    """The successor of ``token`` rotated at T0 + 400 (the transaction path)."""
    r = store.rotate(token, client_id=OWNER, now=T0 + 400, narrow=narrow_for(store.engine, {}))
    assert r.token is not None
    return r.token


@pytest.mark.parametrize(("form", "now"), SUCCESSES)
def test_a_rotation_is_one_statement_writing_the_same_successor(
    store: RefreshTokenStore, statements: list[str], form: dict[str, str], now: float
) -> None:
    fast, slow = login(store), login(store)
    if now > T0 + 500:  # the login's token has expired by then: present its successor
        fast, slow = _hop(store, fast), _hop(store, slow)
    with store.engine.connect() as conn:  # the pool's one connection
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    statements.clear()
    fast_outcome = outcome(store, fast, now, form, fast=True)
    assert statements == []  # nothing through SQLAlchemy's execution layers
    # One statement, outside a transaction block: without it, BEGIN and COMMIT around it (the
    # last query would be COMMIT), or an open transaction (the state 'idle in transaction').
    query, state = session_of(store, pid)
    assert query.lstrip().startswith("WITH claimed AS")
    assert state == "idle"
    with store.engine.connect() as conn:  # the same connection, back from autocommit
        driver = conn.connection.driver_connection
        assert driver is not None
        assert driver.autocommit is False
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
    slow_outcome = outcome(store, slow, now, form, fast=False)
    assert fast_outcome[0] == "ok"
    assert fast_outcome[:3] == slow_outcome[:3]
    assert rows(store.engine, family_of(store.engine, fast)) == rows(
        store.engine, family_of(store.engine, slow)
    )


def _used(store: RefreshTokenStore, token: str) -> None:
    store.rotate(token, client_id=OWNER, now=T0 + 1, narrow=narrow_for(store.engine, {}))


def _revoked(store: RefreshTokenStore, token: str) -> None:
    store.revoke_family_of(token, client_id=OWNER, now=T0 + 1)


def _unknown(store: RefreshTokenStore, token: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == token_hash(token))
            .values(token_hash=token_hash(token + "-gone"))
        )


REFUSALS = [
    pytest.param("u1", None, {"scope": "a c"}, T0 + 5, {}, id="scope-beyond-the-grant"),
    pytest.param("u-off", None, {}, T0 + 5, {}, id="disabled-user"),
    pytest.param("u-gone", None, {}, T0 + 5, {}, id="missing-user"),
    pytest.param("u1", None, {}, T0 + 5, {"client_id": "thief"}, id="wrong-client"),
    pytest.param("u1", None, {}, T0 + 600, {}, id="expired"),
    pytest.param("u1", _used, {}, T0 + 5, {}, id="reused"),
    pytest.param("u1", _revoked, {}, T0 + 5, {}, id="revoked"),
    pytest.param("u1", _unknown, {}, T0 + 5, {}, id="unknown"),
]


@pytest.mark.parametrize(("user_id", "before", "form", "now", "kw"), REFUSALS)
def test_every_other_case_ends_as_the_transaction_path_ends_it(
    store: RefreshTokenStore,
    user_id: str,
    before: Callable[[RefreshTokenStore, str], None] | None,
    form: dict[str, str],
    now: float,
    kw: dict[str, str],
) -> None:
    fast, slow = login(store, user_id), login(store, user_id)
    fast_family, slow_family = family_of(store.engine, fast), family_of(store.engine, slow)
    if before is not None:
        before(store, fast)
        before(store, slow)
    fast_outcome = outcome(store, fast, now, form, fast=True, **kw)
    slow_outcome = outcome(store, slow, now, form, fast=False, **kw)
    assert fast_outcome[0] != "ok"
    assert fast_outcome[:3] == slow_outcome[:3]
    assert rows(store.engine, fast_family) == rows(store.engine, slow_family)
