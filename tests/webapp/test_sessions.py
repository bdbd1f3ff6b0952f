"""The web app's session store: opaque cookies, idle and absolute lifetimes, the bound, a fresh
cookie value at sign-in, single-use pending sign-ins."""

from __future__ import annotations

from shared.clock import FakeClock
from webapp.sessions import MAX_PENDING, PendingLogin, SessionStore, SignedIn


def _store(clock: FakeClock, **kw: float) -> SessionStore:
    args = {"max_sessions": 3, "idle_ttl": 100.0, "ttl": 1000.0, "login_ttl": 60.0, **kw}
    return SessionStore(
        max_sessions=int(args["max_sessions"]),
        idle_ttl=args["idle_ttl"],
        ttl=args["ttl"],
        login_ttl=args["login_ttl"],
        clock=clock,
    )


def _user() -> SignedIn:
    return SignedIn(subject="user:1", display_name="demo", id_token="i", refresh_token="r")


def test_a_cookie_finds_its_session_and_nothing_else() -> None:
    store = _store(FakeClock())
    cookie, session = store.create()
    assert len(cookie) >= 43  # 256 bits
    assert store.find(cookie) is session
    assert store.find(cookie + "x") is None
    assert store.find("") is None
    assert store.find(None) is None
    assert session.key != cookie.encode()  # kept by hash


def test_idle_and_absolute_lifetimes() -> None:
    clock = FakeClock()
    store = _store(clock)
    cookie, _ = store.create()
    clock.advance(99)
    assert store.find(cookie) is not None  # use restarts the idle clock
    clock.advance(99)
    assert store.find(cookie) is not None
    clock.advance(100)
    assert store.find(cookie) is None  # idle for 100 s
    cookie, _ = store.create()
    for _ in range(11):
        clock.advance(95)
        found = store.find(cookie)
    assert found is None  # 1045 s after creation, though never idle for long


def test_sign_in_moves_to_a_fresh_cookie_and_the_old_one_stops_working() -> None:
    store = _store(FakeClock())
    old, session = store.create()
    store.add_pending(session, PendingLogin("s", "n", "v", 0))
    new, fresh = store.sign_in(session, _user())
    assert new != old
    assert store.find(old) is None
    assert session.ended
    assert store.find(new) is fresh
    assert fresh.user is not None
    assert not fresh.pending
    assert fresh.csrf_token != session.csrf_token


def test_a_flood_of_anonymous_sessions_never_pushes_out_a_signed_in_one() -> None:
    store = _store(FakeClock())
    _, session = store.create()
    signed_in, _ = store.sign_in(session, _user())
    first, _ = store.create()
    for _ in range(10):
        store.create()
    assert store.find(signed_in) is not None
    assert store.find(first) is None  # the anonymous map holds 3, least recently used out
    assert len(store) == 4
    assert store.evicted == 8


def test_the_signed_in_map_is_bounded_least_recently_used_first() -> None:
    store = _store(FakeClock())
    cookies = [store.sign_in(store.create()[1], _user())[0] for _ in range(3)]
    assert store.find(cookies[0]) is not None  # now the most recently used
    store.sign_in(store.create()[1], _user())
    assert store.find(cookies[1]) is None
    assert store.find(cookies[0]) is not None
    assert store.signed_in_count == 3


def test_pending_sign_ins_are_single_use_expire_and_are_few() -> None:
    clock = FakeClock()
    store = _store(clock)
    _, session = store.create()
    store.add_pending(session, PendingLogin("a", "n", "v", clock()))
    assert store.take_pending(session, "a") is not None
    assert store.take_pending(session, "a") is None
    store.add_pending(session, PendingLogin("b", "n", "v", clock()))
    clock.advance(61)
    assert store.take_pending(session, "b") is None
    for i in range(MAX_PENDING + 1):
        store.add_pending(session, PendingLogin(str(i), "n", "v", clock()))
    assert store.take_pending(session, "0") is None  # the oldest went first
    assert store.take_pending(session, str(MAX_PENDING)) is not None
