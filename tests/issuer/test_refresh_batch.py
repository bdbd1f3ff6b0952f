"""PostgreSQL's batched rotations (issuer/refresh_batch.py, taken by ``RefreshTokenStore.redeem``
when the caller gives ``SuccessorTerms``): the rotations of one event-loop turn are one statement
on the batch's own connections, outside SQLAlchemy, and each writes exactly the successor the
transaction path writes; every other case claims nothing there and ends as the transaction path
alone ends it (the same outcome, the same rows). Each case runs twice on twin tokens in the same
state, once batched and once by the transaction path. Then the batching itself (one statement a
turn, at most MAX_BATCH a statement, CONNECTIONS connections, a token twice in one batch), the
planner settings, and errors: SQLAlchemy's with the parameters hidden, a lost session or a
server refusing connections an outage (issuer/outage.py), a new connection after it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from issuer.accounts import AccountStore
from issuer.db import refresh_tokens, users
from issuer.engines import make_engine
from issuer.grants import resolve_audience, resolve_scope
from issuer.outage import unavailability
from issuer.refresh import Redemption, RefreshGrant, RefreshTokenStore, SuccessorTerms, token_hash
from issuer.refresh_batch import (
    CONNECTIONS,
    MAX_BATCH,
    ROTATE_BATCH,
    Rotation,
    RotationBatch,
    _parameters,
    connect,
)
from tests.support.redeem import Redeemer

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
    store: RefreshTokenStore,
    redeem: Redeemer,
    token: str,
    now: float,
    form: dict[str, str],
    *,
    batched: bool,
    **kw: Any,
) -> tuple[object, ...]:
    narrow = narrow_for(store.engine, form)
    client_id = kw.get("client_id", OWNER)
    try:
        if batched:
            r = redeem(token, client_id=client_id, now=now, narrow=narrow, terms=terms_for(form))
        else:
            r = store.rotate(token, client_id=client_id, now=now, narrow=narrow)
    except Exception as exc:  # narrow's refusals
        return ("raised", type(exc).__name__)
    return (r.status, r.scopes, r.audience, r.grant.family_id if r.grant else None)


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
def test_a_batched_rotation_writes_the_same_successor_outside_sqlalchemy(
    store: RefreshTokenStore,
    redeem: Redeemer,
    statements: list[str],
    form: dict[str, str],
    now: float,
) -> None:
    fast, slow = login(store), login(store)
    if now > T0 + 500:  # the login's token has expired by then: present its successor
        fast, slow = _hop(store, fast), _hop(store, slow)
    statements.clear()
    fast_outcome = outcome(store, redeem, fast, now, form, batched=True)
    assert statements == []  # nothing through SQLAlchemy's engine: the batch's own connection
    slow_outcome = outcome(store, redeem, slow, now, form, batched=False)
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
    redeem: Redeemer,
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
    fast_outcome = outcome(store, redeem, fast, now, form, batched=True, **kw)
    slow_outcome = outcome(store, redeem, slow, now, form, batched=False, **kw)
    assert fast_outcome[0] != "ok"
    assert fast_outcome[:3] == slow_outcome[:3]
    assert rows(store.engine, fast_family) == rows(store.engine, slow_family)


# -- the batching ------------------------------------------------------------------------------


class Counted:
    """A batch connection that counts the batches sent on it (the proxy the tests' connect
    returns: RotationBatch uses ``cursor`` for a batch, ``execute`` for a ping, ``fileno``,
    ``broken`` and ``close``)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], sent: list[int]) -> None:
        self.conn = conn
        self.sent = sent
        self.pid = conn.info.backend_pid

    def cursor(self, **kwargs: Any) -> Any:
        self.sent.append(self.pid)
        return self.conn.cursor(**kwargs)

    @property
    def broken(self) -> bool:
        return self.conn.broken

    async def execute(self, query: str) -> Any:
        return await self.conn.execute(query)  # type: ignore[arg-type]

    def fileno(self) -> int:
        return self.conn.fileno()

    async def close(self) -> None:
        await self.conn.close()


@pytest.fixture
def sent(store: RefreshTokenStore) -> list[int]:
    """The backend pid of each statement the store's batch sends (its connections counted)."""
    seen: list[int] = []

    async def counting(engine: Engine) -> Counted:
        return Counted(await connect(engine), seen)

    store.batch = RotationBatch(store.engine, connect=counting)
    return seen


def redeem_together(redeem: Redeemer, tokens: list[str], now: float = T0 + 1) -> list[Redemption]:
    """Every token's redemption started in the same event-loop turn (asyncio.gather)."""

    async def all_at_once() -> list[Redemption]:
        return list(
            await asyncio.gather(
                *(
                    redeem.store.redeem(
                        t,
                        client_id=OWNER,
                        now=now,
                        narrow=narrow_for(redeem.store.engine, {}),
                        terms=SuccessorTerms(),
                    )
                    for t in tokens
                )
            )
        )

    result: list[Redemption] = redeem.run(all_at_once())
    return result


def test_the_rotations_of_one_turn_are_one_statement(
    store: RefreshTokenStore, redeem: Redeemer, sent: list[int], statements: list[str]
) -> None:
    tokens = [login(store) for _ in range(8)]
    statements.clear()
    done = redeem_together(redeem, tokens)
    assert [r.status for r in done] == ["ok"] * 8
    assert len(sent) == 1
    assert statements == []  # no fallback to the transaction path
    assert len({r.token for r in done}) == 8
    for token, r in zip(tokens, done, strict=True):  # each successor is its own token's
        assert r.token is not None
        assert family_of(store.engine, r.token) == family_of(store.engine, token)


def test_a_batch_holds_at_most_max_batch_on_at_most_connections_connections(
    store: RefreshTokenStore, redeem: Redeemer, sent: list[int]
) -> None:
    count = 2 * MAX_BATCH + 5
    done = redeem_together(redeem, [login(store) for _ in range(count)])
    assert [r.status for r in done] == ["ok"] * count
    assert len(sent) == 3  # 64 + 64 + 5
    assert len(set(sent)) <= CONNECTIONS


def test_a_token_twice_in_one_batch_is_claimed_once_and_the_reuse_ends_its_family(
    store: RefreshTokenStore, redeem: Redeemer, sent: list[int]
) -> None:
    token = login(store)
    first, second = redeem_together(redeem, [token, token])
    assert sorted([first.status, second.status]) == ["ok", "reused"]
    assert len(sent) == 1  # the second went on to the transaction path, which saw the reuse
    successor = first.token or second.token
    assert successor is not None
    revoked = [r["revoked_at"] for r in rows(store.engine, family_of(store.engine, token))]
    assert len(revoked) == 2
    assert all(at is not None for at in revoked)  # the whole family, the successor too


def test_another_event_loop_takes_the_transaction_path(
    store: RefreshTokenStore, redeem: Redeemer, statements: list[str]
) -> None:
    """The batch keeps to the loop of its first call (its connections belong to that loop)."""
    assert outcome(store, redeem, login(store), T0 + 1, {}, batched=True)[0] == "ok"
    token = login(store)
    statements.clear()
    elsewhere = asyncio.run(
        store.redeem(
            token,
            client_id=OWNER,
            now=T0 + 1,
            narrow=narrow_for(store.engine, {}),
            terms=SuccessorTerms(),
        )
    )
    assert elsewhere.status == "ok"
    assert statements  # through SQLAlchemy: the transaction path


def test_the_batch_connections_look_tokens_up_by_the_primary_key_on_a_young_table(
    store: RefreshTokenStore, redeem: Redeemer
) -> None:
    """Without the planner settings PostgreSQL chose a sequential scan of refresh_tokens here
    (a table never analysed looks tiny): 60 ms a batch among 3,000 rows instead of 2 ms."""
    tokens = [login(store) for _ in range(2000)]
    params = _parameters(
        [
            Rotation(
                digest=token_hash(t), client_id=OWNER, now=T0 + 1, new_hash=f"n{i}", idle_end=1
            )
            for i, t in enumerate(tokens[:16])
        ]
    )

    async def plan() -> str:
        conn = await connect(store.engine)
        try:
            cursor = await conn.execute("EXPLAIN " + ROTATE_BATCH, params)  # type: ignore[arg-type]
            return "\n".join(str(row[0]) for row in await cursor.fetchall())
        finally:
            await conn.close()

    text_plan = redeem.run(plan())
    assert "Index Scan using refresh_tokens_pkey on refresh_tokens" in text_plan
    assert "Seq Scan on refresh_tokens" not in text_plan


# -- errors ------------------------------------------------------------------------------------


def test_an_error_fails_the_batch_as_sqlalchemys_with_the_parameters_hidden(
    store: RefreshTokenStore, redeem: Redeemer
) -> None:
    """A statement that fails on the server (here: the table is not on the search path) raises
    DBAPIError in every caller of its batch, without the hashes, and is no outage (a 500)."""

    async def elsewhere(engine: Engine) -> psycopg.AsyncConnection[Any]:
        conn = await connect(engine)
        await conn.execute("SET search_path = pg_catalog")
        return conn

    store.batch = RotationBatch(store.engine, connect=elsewhere)
    tokens = [login(store), login(store)]
    with pytest.raises(DBAPIError) as caught:
        redeem_together(redeem, tokens)
    assert not caught.value.connection_invalidated
    assert unavailability(caught.value) is None
    message = str(caught.value)
    assert "refresh_tokens" in message
    assert all(token_hash(t) not in message for t in tokens)
    with store.engine.connect() as conn:  # nothing was spent
        used = conn.execute(
            select(refresh_tokens.c.used_at).where(
                refresh_tokens.c.token_hash.in_([token_hash(t) for t in tokens])
            )
        ).all()
    assert [u for (u,) in used] == [None, None]


def _admin(store: RefreshTokenStore) -> psycopg.Connection[Any]:
    """A session of its own, outside the pool and the batch."""
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True)


def test_a_session_ended_while_idle_is_replaced_before_the_next_batch(
    store: RefreshTokenStore, redeem: Redeemer, sent: list[int]
) -> None:
    """The server ending an idle session (a restart does this to all) costs no request: the
    batch pings a connection the server has spoken on and takes a new one."""
    assert redeem_together(redeem, [login(store)])[0].status == "ok"
    with _admin(store) as admin:
        # With a timeout the call returns once the session is gone; without, the signal may
        # still be on its way when the next batch pings (the ping passed, the statement met the
        # ending: failed so once in CI).
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (sent[0],))
    again = redeem_together(redeem, [login(store)])
    assert again[0].status == "ok"
    assert sent[-1] != sent[0]  # a new session: recovered without a restart or a failure


def test_a_session_lost_during_the_statement_is_an_outage_then_a_new_connection(
    store: RefreshTokenStore, redeem: Redeemer, sent: list[int]
) -> None:
    assert redeem_together(redeem, [login(store)])[0].status == "ok"
    token = login(store)
    failure: list[BaseException] = []

    def blocked_redemption() -> None:
        try:
            redeem_together(redeem, [token])
        except BaseException as exc:
            failure.append(exc)

    with store.engine.connect() as holder:  # hold the token's row: the statement waits on it
        holder.execute(
            select(refresh_tokens.c.token_hash)
            .where(refresh_tokens.c.token_hash == token_hash(token))
            .with_for_update()
        )
        worker = threading.Thread(target=blocked_redemption)
        worker.start()
        with _admin(store) as admin:
            for _ in range(500):  # until the batch's statement waits on the lock (<= 10 s)
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s",
                    ("%WITH presented%",),
                ).fetchall()
                if waiting:
                    break
                time.sleep(0.02)
            assert waiting, "the batch's statement never waited on the held row"
            admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
        worker.join(timeout=30)
        holder.rollback()
    assert len(failure) == 1
    assert isinstance(failure[0], OperationalError)
    assert unavailability(failure[0]) is not None  # a 503 temporarily_unavailable
    again = redeem_together(redeem, [token])  # not spent: the statement never committed
    assert again[0].status == "ok"
    assert sent[-1] != sent[0]


def test_a_statement_cancelled_on_a_live_session_is_no_outage(
    store: RefreshTokenStore, redeem: Redeemer
) -> None:
    """A statement the server cancels (here its statement_timeout, while the row it claims is
    held) is an error of that statement, a 500: the session lives on and nothing is invalidated."""

    async def impatient(engine: Engine) -> psycopg.AsyncConnection[Any]:
        conn = await connect(engine)
        await conn.execute("SET statement_timeout = 200")
        return conn

    store.batch = RotationBatch(store.engine, connect=impatient)
    token = login(store)
    with store.engine.connect() as holder:
        holder.execute(
            select(refresh_tokens.c.token_hash)
            .where(refresh_tokens.c.token_hash == token_hash(token))
            .with_for_update()
        )
        with pytest.raises(OperationalError) as caught:
            redeem_together(redeem, [token])
        holder.rollback()
    assert getattr(caught.value.orig, "sqlstate", None) == "57014"  # query_canceled
    assert not caught.value.connection_invalidated
    assert unavailability(caught.value) is None
    assert redeem_together(redeem, [token])[0].status == "ok"  # not spent


def test_a_server_that_refuses_connections_is_an_outage() -> None:
    from tests.support.processes import free_port

    eng = make_engine(f"postgresql://keyhouse@127.0.0.1:{free_port()}/none", pool_size=1)
    redeemer = Redeemer(RefreshTokenStore(eng, ttl=1000))
    try:
        with pytest.raises(OperationalError) as caught:
            redeem_together(redeemer, ["a-token"])
        assert unavailability(caught.value) is not None
    finally:
        redeemer.close()
        eng.dispose()
