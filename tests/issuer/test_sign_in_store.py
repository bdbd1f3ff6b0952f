"""The sign-in stores on SQLite and PostgreSQL: issuer sessions (issuer/sessions.py), consents
(issuer/consents.py), authorization codes (issuer/codes.py), revoked access tokens
(issuer/revoked.py) and the refresh tokens' ``sid`` (issuer/refresh.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from issuer.codes import CodeReplayed, CodeStore
from issuer.consents import ConsentStore
from issuer.db import authorization_codes, login_sessions, refresh_tokens
from issuer.engines import make_engine
from issuer.refresh import (
    RefreshGrant,
    RefreshTokenStore,
    SuccessorTerms,
    token_hash,
)
from issuer.refresh_batch import Rotation
from issuer.revoked import RevokedAccessTokens
from issuer.sessions import SessionStore
from shared.clock import FakeClock
from shared.errors import InvalidGrant
from tests.support.redeem import Redeemer

T0 = 1_000_000.0
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.fixture
def engine(issuer_schema_url: str) -> Iterator[Engine]:
    eng = make_engine(issuer_schema_url, pool_size=8)
    try:
        yield eng
    finally:
        eng.dispose()


def _keep(grant: RefreshGrant, _conn: object) -> tuple[frozenset[str], str]:
    return grant.scopes, grant.audience


# -- sessions --------------------------------------------------------------------------------


def test_session_is_found_by_its_cookie_which_is_stored_only_hashed(engine: Engine) -> None:
    store = SessionStore(engine, idle_ttl=1800, ttl=28800)
    cookie, session = store.create("u1", T0)
    assert len(cookie) >= 43  # 256 bits, base64url
    assert session.expires_at == T0 + 28800
    assert session.auth_time == T0
    with engine.connect() as conn:
        dumped = " ".join(str(v) for row in conn.execute(select(login_sessions)) for v in row)
    assert cookie not in dumped
    found = store.find(cookie, T0 + 10)
    assert found is not None
    assert (found.sid, found.user_id, found.last_seen_at) == (session.sid, "u1", T0 + 10)
    assert store.get(session.sid) == found
    assert store.find(cookie + "x", T0 + 10) is None
    assert store.find("", T0 + 10) is None
    assert store.find("x" * 5000, T0 + 10) is None
    other, second = store.create("u1", T0)  # every login a new session
    assert (other, second.sid) != (cookie, session.sid)


def test_session_idle_expiry_and_activity_keeping_it(engine: Engine) -> None:
    store = SessionStore(engine, idle_ttl=100, ttl=1000)
    cookie, _ = store.create("u1", T0)
    assert store.find(cookie, T0 + 99) is not None  # activity: idle counts from here
    assert store.find(cookie, T0 + 198) is not None
    assert store.find(cookie, T0 + 298) is None  # 100 s without a request
    assert store.find(cookie, T0 + 400) is None


def test_session_absolute_expiry_despite_activity(engine: Engine) -> None:
    store = SessionStore(engine, idle_ttl=100, ttl=300)
    cookie, _ = store.create("u1", T0)
    for at in (50, 120, 190, 260, 299):
        assert store.find(cookie, T0 + at) is not None
    assert store.find(cookie, T0 + 300) is None


def test_ended_session_is_gone(engine: Engine) -> None:
    store = SessionStore(engine, idle_ttl=100, ttl=300)
    cookie, session = store.create("u1", T0)
    assert store.end(session.sid, T0 + 1) is True
    assert store.end(session.sid, T0 + 2) is False
    assert store.end("no-such-sid", T0 + 2) is False
    assert store.find(cookie, T0 + 3) is None
    assert store.get(session.sid) is not None  # still readable (logout reads it by id_token sid)


# -- consents ---------------------------------------------------------------------------------


def test_consent_covers_merges_lists_and_revokes(engine: Engine) -> None:
    store = ConsentStore(engine)
    assert not store.covers("u1", "c1", {"openid"}, "photos")
    store.grant("u1", "c1", {"openid", "photos:read"}, "photos", T0)
    assert store.covers("u1", "c1", {"openid"}, "photos")
    assert store.covers("u1", "c1", set(), "photos")
    assert not store.covers("u1", "c1", {"photos:write"}, "photos")
    assert not store.covers("u1", "c1", {"openid"}, "contacts")
    assert not store.covers("u2", "c1", {"openid"}, "photos")
    assert not store.covers("u1", "c2", {"openid"}, "photos")
    store.grant("u1", "c1", {"contacts:read"}, "contacts", T0 + 1)  # merged, not replaced
    assert store.covers("u1", "c1", {"openid", "photos:read", "contacts:read"}, "photos")
    assert store.covers("u1", "c1", {"openid"}, "contacts")
    store.grant("u1", "c2", {"openid"}, "photos", T0 + 2)
    listed = store.list("u1")
    assert [c.client_id for c in listed] == ["c1", "c2"]
    assert listed[0].scopes == {"openid", "photos:read", "contacts:read"}
    assert listed[0].audiences == {"photos", "contacts"}
    assert store.revoke("u1", "c1") is True
    assert store.revoke("u1", "c1") is False
    assert not store.covers("u1", "c1", {"openid"}, "photos")
    assert [c.client_id for c in store.list("u1")] == ["c2"]
    assert store.list("nobody") == []


# -- authorization codes ----------------------------------------------------------------------


def _issue(codes: CodeStore, *, now: float = T0, nonce: str | None = "n-1") -> str:
    return codes.issue(
        client_id="web",
        redirect_uri="https://app.example/cb",
        code_challenge=CHALLENGE,
        user_id="u1",
        scopes={"openid", "photos:read"},
        audience="photos",
        nonce=nonce,
        sid="sid-1",
        auth_time=T0 - 5,
        now=now,
    )


def _codes(engine: Engine) -> CodeStore:
    """The code store, its revocations on the tests' clock: RevokedAccessTokens purges expired
    rows now and then (one revocation in PURGE_ONE_IN), by its clock; on the system clock a
    revocation the tests made at T0 is long expired, and a purge deleted it (one run in ~20
    of the six-thread race below failed so)."""
    return CodeStore(engine, ttl=60, revoked=RevokedAccessTokens(engine, clock=FakeClock(T0)))


def _redeem(codes: CodeStore, code: str, *, now: float, family: str | None, jti: str) -> object:
    return codes.redeem(
        code, now=now, family_id=family, access_jti=jti, access_expires_at=now + 300
    )


def test_code_redeemed_once_returns_its_terms(engine: Engine) -> None:
    codes = _codes(engine)
    code = _issue(codes)
    assert len(code) >= 43  # 256 bits
    with engine.connect() as conn:
        stored = conn.execute(select(authorization_codes.c.code_hash)).scalars().all()
    assert code not in stored
    terms = codes.redeem(
        code, now=T0 + 1, family_id="fam-1", access_jti="jti-1", access_expires_at=T0 + 301
    )
    assert terms.client_id == "web"
    assert terms.redirect_uri == "https://app.example/cb"
    assert terms.code_challenge == CHALLENGE
    assert terms.scopes == {"openid", "photos:read"}
    assert (terms.audience, terms.nonce, terms.sid, terms.auth_time) == (
        "photos",
        "n-1",
        "sid-1",
        T0 - 5,
    )
    assert terms.expires_at == T0 + 60


def test_code_presented_twice_revokes_what_the_first_redemption_issued(engine: Engine) -> None:
    codes = _codes(engine)
    refresh = RefreshTokenStore(engine, ttl=3600)
    revoked = RevokedAccessTokens(engine, clock=FakeClock(T0))
    code = _issue(codes)
    _redeem(codes, code, now=T0 + 1, family="fam-1", jti="jti-1")
    first = refresh.issue(
        client_id="web",
        user_id="u1",
        scopes=frozenset({"openid"}),
        audience="photos",
        now=T0 + 1,
        family_id="fam-1",
        sid="sid-1",
    )
    unrelated = refresh.issue(
        client_id="web", user_id="u1", scopes=frozenset(), audience="photos", now=T0 + 1
    )
    assert not revoked.is_revoked("jti-1")
    with pytest.raises(InvalidGrant):
        _redeem(codes, code, now=T0 + 2, family="fam-2", jti="jti-2")
    assert revoked.is_revoked("jti-1")
    assert not revoked.is_revoked("jti-2")
    assert refresh.rotate(first, client_id="web", now=T0 + 3, narrow=_keep).status == "revoked"
    assert refresh.rotate(unrelated, client_id="web", now=T0 + 3, narrow=_keep).status == "ok"
    with pytest.raises(InvalidGrant):  # and every time after
        _redeem(codes, code, now=T0 + 4, family="fam-3", jti="jti-3")


def test_replay_before_the_first_redemption_stored_its_refresh_token(engine: Engine) -> None:
    """The replay races the first redemption: the family's first token, stored after the replay
    revoked the family, is stored revoked."""
    codes = _codes(engine)
    refresh = RefreshTokenStore(engine, ttl=3600)
    code = _issue(codes)
    _redeem(codes, code, now=T0 + 1, family="fam-1", jti="jti-1")
    with pytest.raises(InvalidGrant):
        _redeem(codes, code, now=T0 + 1, family="fam-2", jti="jti-2")
    late = refresh.issue(
        client_id="web",
        user_id="u1",
        scopes=frozenset(),
        audience="photos",
        now=T0 + 1,
        family_id="fam-1",
    )
    assert refresh.rotate(late, client_id="web", now=T0 + 2, narrow=_keep).status == "revoked"
    # A family started from a code nobody replayed is born live.
    other = _issue(codes)
    _redeem(codes, other, now=T0 + 1, family="fam-9", jti="jti-9")
    live = refresh.issue(
        client_id="web",
        user_id="u1",
        scopes=frozenset(),
        audience="photos",
        now=T0 + 1,
        family_id="fam-9",
    )
    assert refresh.rotate(live, client_id="web", now=T0 + 2, narrow=_keep).status == "ok"


def test_expired_and_unknown_codes_are_invalid_grant_and_revoke_nothing(engine: Engine) -> None:
    codes = _codes(engine)
    revoked = RevokedAccessTokens(engine)
    code = _issue(codes)
    with pytest.raises(InvalidGrant):
        _redeem(codes, code, now=T0 + 60, family="fam-1", jti="jti-1")
    with pytest.raises(InvalidGrant):
        _redeem(codes, "not-a-code", now=T0, family=None, jti="jti-2")
    with pytest.raises(InvalidGrant):
        _redeem(codes, "x" * 1000, now=T0, family=None, jti="jti-3")
    assert not any(revoked.is_revoked(j) for j in ("jti-1", "jti-2", "jti-3"))
    fresh = _issue(codes, now=T0 + 100)
    _redeem(codes, fresh, now=T0 + 159, family=None, jti="jti-4")  # one second to spare


def test_code_ttl_bounds(engine: Engine) -> None:
    for ttl in (0, 601):
        with pytest.raises(ValueError):
            CodeStore(engine, ttl=ttl)


def test_concurrent_redemptions_of_one_code_exactly_one_wins(engine: Engine) -> None:
    codes = _codes(engine)
    code = _issue(codes)
    attempts = 6
    barrier = threading.Barrier(attempts)
    outcomes: list[str] = []

    def redeem(i: int) -> None:
        barrier.wait()
        try:
            _redeem(codes, code, now=T0 + 1, family=f"fam-{i}", jti=f"jti-{i}")
            outcomes.append(f"ok-{i}")
        except InvalidGrant:
            outcomes.append("refused")
        except Exception as exc:  # reported by the asserts below (e.g. "database is locked")
            outcomes.append(f"error: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == attempts
    winners = [o for o in outcomes if o.startswith("ok-")]
    assert len(winners) == 1, outcomes
    assert outcomes.count("refused") == attempts - 1, outcomes
    # The losers were replays: the winner's jti is revoked.
    winner = winners[0].removeprefix("ok-")
    assert RevokedAccessTokens(engine).is_revoked(f"jti-{winner}")


# -- revoked access tokens --------------------------------------------------------------------


def test_revoked_access_tokens_idempotent_and_purged(engine: Engine) -> None:
    revoked = RevokedAccessTokens(engine, clock=FakeClock(T0))
    revoked.revoke("jti-a", T0 + 300)
    revoked.revoke("jti-a", T0 + 300)  # again: nothing changes
    revoked.revoke("jti-b", T0 + 10)
    assert revoked.is_revoked("jti-a")
    assert not revoked.is_revoked("jti-c")
    assert not revoked.is_revoked("")
    assert revoked.purge(T0 + 100) == 1
    assert revoked.is_revoked("jti-a")
    assert not revoked.is_revoked("jti-b")


# -- refresh tokens: sid -----------------------------------------------------------------------


def _users(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (user_id, username, password_hash, scopes, created_at,"
                " disabled) VALUES ('u1', 'u1', '-', 'a', 1.0, :f)"
            ),
            {"f": False},
        )


@pytest.mark.parametrize("terms", [None, SuccessorTerms()], ids=["transaction", "terms"])
def test_sid_is_carried_to_every_successor(engine: Engine, terms: SuccessorTerms | None) -> None:
    """Both rotation paths (with terms PostgreSQL rotates in a batched statement)."""
    _users(engine)
    store = RefreshTokenStore(engine, ttl=3600)
    at_once: list[bool] = []  # did the batched statement rotate?
    if store.batch is not None:
        batched = store.batch.rotate

        async def spy(rotation: Rotation) -> dict[str, Any] | None:
            row = await batched(rotation)
            at_once.append(row is not None)
            return row

        store.batch.rotate = spy  # type: ignore[method-assign]
    token = store.issue(
        client_id="web",
        user_id="u1",
        scopes=frozenset({"a"}),
        audience="photos",
        now=T0,
        sid="sid-1",
    )
    with Redeemer(store) as redeem:
        for i in range(3):
            redemption = redeem(token, client_id="web", now=T0 + i + 1, narrow=_keep, terms=terms)
            assert redemption.status == "ok"
            assert redemption.grant is not None
            assert redemption.grant.sid == "sid-1"
            assert redemption.token is not None
            token = redemption.token
    postgres_with_terms = terms is not None and engine.dialect.name == "postgresql"
    assert at_once == ([True] * 3 if postgres_with_terms else [])
    with engine.connect() as conn:
        sids = conn.execute(select(refresh_tokens.c.sid)).scalars().all()
    assert sids == ["sid-1"] * 4
    with engine.connect() as conn:
        last = conn.execute(
            select(refresh_tokens.c.sid).where(refresh_tokens.c.token_hash == token_hash(token))
        ).scalar_one()
    assert last == "sid-1"


def test_revoke_session_ends_the_families_of_that_session_only(engine: Engine) -> None:
    _users(engine)
    store = RefreshTokenStore(engine, ttl=3600)

    def login(sid: str | None) -> str:
        return store.issue(
            client_id="web",
            user_id="u1",
            scopes=frozenset({"a"}),
            audience="photos",
            now=T0,
            sid=sid,
        )

    mine, also_mine, other, password_grant = login("s1"), login("s1"), login("s2"), login(None)
    rotated = store.rotate(mine, client_id="web", now=T0 + 1, narrow=_keep)
    assert rotated.token is not None
    # The redeemed token, its successor and the second family's token.
    assert store.revoke_session("s1", T0 + 2) == 3
    for token in (rotated.token, also_mine):
        assert store.rotate(token, client_id="web", now=T0 + 3, narrow=_keep).status == "revoked"
    for token in (other, password_grant):
        assert store.rotate(token, client_id="web", now=T0 + 3, narrow=_keep).status == "ok"
    assert store.revoke_session("s1", T0 + 4) == 0


def test_a_family_started_from_an_ended_session_is_born_revoked(engine: Engine) -> None:
    """A code redeemed after its session's logout (within the code's lifetime): logout's
    revoke_session ran before the family existed, so the family must be stored revoked."""
    _users(engine)
    sessions = SessionStore(engine, idle_ttl=1800, ttl=28800)
    store = RefreshTokenStore(engine, ttl=3600)
    _, live = sessions.create("u1", T0)
    _, ended = sessions.create("u1", T0)
    assert sessions.end(ended.sid, T0 + 1)

    def start(sid: str) -> str:
        return store.issue(
            client_id="web",
            user_id="u1",
            scopes=frozenset({"a"}),
            audience="photos",
            now=T0 + 2,
            family_id=f"fam-{sid}",
            sid=sid,
        )

    assert store.rotate(start(ended.sid), client_id="web", now=T0 + 3, narrow=_keep).status == (
        "revoked"
    )
    survivor = store.rotate(start(live.sid), client_id="web", now=T0 + 3, narrow=_keep)
    assert survivor.status == "ok"


def test_a_replay_is_told_apart_from_an_unknown_code(engine: Engine) -> None:
    codes = _codes(engine)
    code = _issue(codes)
    with pytest.raises(InvalidGrant) as unknown:
        _redeem(codes, "nope", now=T0 + 1, family=None, jti="j0")
    assert not isinstance(unknown.value, CodeReplayed)
    _redeem(codes, code, now=T0 + 1, family=None, jti="j1")
    with pytest.raises(CodeReplayed):
        _redeem(codes, code, now=T0 + 2, family=None, jti="j2")
    expired = _issue(codes)
    with pytest.raises(InvalidGrant) as late:
        _redeem(codes, expired, now=T0 + 61, family=None, jti="j3")
    assert not isinstance(late.value, CodeReplayed)
