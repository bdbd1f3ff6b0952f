"""Logins are hashed a bounded number at a time, off the event loop, at idle priority, with a
guaranteed share of a core while they wait."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event

import issuer.accounts
from bench.harness.processes import Server
from issuer.passwords import (
    CHECKS_AT_ONCE,
    MAX_PAUSE_SECONDS,
    NICENESS,
    FairShare,
    PasswordPool,
    fair_share,
    hash_password,
    run_only_when_idle,
    verify_password,
)
from tests.issuer.conftest import App
from tests.support import web
from tests.support.processes import BIN, Stack

pytestmark = pytest.mark.password_cost  # the checks' CPU time and threads are the subject


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

    # Other blocking work (database calls) stays at normal priority: the policy of each thread
    # that ran a statement, read in that thread as it ran it.
    database: list[tuple[str, int]] = []

    def record(*_: object) -> None:
        database.append((threading.current_thread().name, os.sched_getscheduler(0)))

    monkeypatch.setattr(issuer.accounts, "verify_password", spy)
    engine = app.issuer.keyring.repo.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert "access_token" in app.login(creds, "alice")
        assert seen == [os.SCHED_IDLE]
        assert app.token(creds, grant_type="client_credentials").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert database  # the login and the token request did read and write
    assert [policy for _, policy in database if policy == os.SCHED_IDLE] == [], database


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
    """A platform without per-thread priorities: the call returns, and the thread runs on at
    the policy and priority it had (nothing else was tried on it)."""
    tried: list[str] = []

    def refuse(name: str) -> Callable[..., None]:
        def refused(*_: object) -> None:
            tried.append(name)
            raise PermissionError("no")

        return refused

    monkeypatch.setattr(os, "sched_setscheduler", refuse("sched_setscheduler"), raising=False)
    monkeypatch.setattr(os, "setpriority", refuse("setpriority"))
    outcome: list[object] = []

    def check() -> None:
        tid = threading.get_native_id()
        before = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid))
        try:
            run_only_when_idle()
        except BaseException as exc:  # reported below, with the thread's state
            outcome.append(exc)
        outcome.append((before, (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid))))

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    [(before, after)] = outcome  # no exception escaped
    assert after == before
    assert tried == ["sched_setscheduler", "setpriority"]


# -- the guaranteed share: arithmetic ---------------------------------------------------------


def test_fair_share_is_what_normal_priority_would_give() -> None:
    """n checks beside a busy event loop: n equal parts out of n + 1, at most CHECKS_AT_ONCE."""
    assert fair_share(0) == 0.0
    assert fair_share(1) == pytest.approx(1 / 2)
    assert fair_share(2) == pytest.approx(2 / 3)
    assert fair_share(8) == fair_share(CHECKS_AT_ONCE)  # the rest wait for a thread


def _drive(
    share: FairShare, *, seconds: float, busy: float, gets: float, owed: float
) -> tuple[float, float]:
    """A loop that works ``busy`` seconds between looks and pauses as told; the hashing threads
    get ``gets`` of each pause (the rest goes elsewhere). Returns (paused, hashing CPU)."""
    now = cpu = paused = 0.0
    while now < seconds:
        now += busy
        pause = share.pause_for(now, cpu, owed)
        now += pause
        cpu += gets * pause
        paused += pause
        share.paused(pause, gets * pause)
    return paused, cpu


def test_a_starved_check_gets_its_share_of_the_time() -> None:
    """The loop never idles: it pauses so the hashing gets 2/3 of the time (two checks)."""
    share = FairShare()
    _, cpu = _drive(share, seconds=10.0, busy=0.004, gets=1.0, owed=2 / 3)
    assert cpu / 10.0 == pytest.approx(2 / 3, abs=0.02)


def test_a_late_look_pauses_at_most_max_pause() -> None:
    """A loop turn of 50 ms (a batch of signatures) is followed by one bounded pause; the rest
    of what the threads are owed comes at the next looks."""
    share = FairShare()
    assert share.pause_for(0.0, 0.0, 2 / 3) == 0.0  # the first look only starts counting
    assert share.pause_for(0.05, 0.0, 2 / 3) == MAX_PAUSE_SECONDS
    _, cpu = _drive(FairShare(), seconds=10.0, busy=0.05, gets=1.0, owed=2 / 3)
    assert cpu / 10.0 == pytest.approx(MAX_PAUSE_SECONDS / (0.05 + MAX_PAUSE_SECONDS), abs=0.02)


def test_no_pause_while_the_threads_get_their_share_elsewhere() -> None:
    """Hashing on an idle core (or another core) at full speed: the loop never pauses."""
    share = FairShare()
    for i in range(1000):
        now = i * 0.004
        assert share.pause_for(now, now * 1.0, 2 / 3) == 0.0


def test_pauses_never_exceed_the_share() -> None:
    """Pauses that help only half (another process takes the rest): the loop still keeps 1/3
    of its time."""
    paused, cpu = _drive(FairShare(), seconds=10.0, busy=0.004, gets=0.6, owed=2 / 3)
    assert paused / 10.0 == pytest.approx(2 / 3, abs=0.02)
    assert cpu == pytest.approx(0.6 * paused)


def test_pauses_that_do_not_help_shrink_and_grow_back_when_they_do() -> None:
    """A host busy with other work takes every pause (an idle-priority thread gets nothing):
    the loop pauses only min_pause at a time, and fully again once the pauses help."""
    share = FairShare()
    paused, cpu = _drive(share, seconds=10.0, busy=0.004, gets=0.0, owed=2 / 3)
    assert cpu == 0.0
    assert share.limit == share.min_pause
    assert paused / 10.0 < 0.15
    _drive(share, seconds=1.0, busy=0.004, gets=1.0, owed=2 / 3)
    assert share.limit == MAX_PAUSE_SECONDS


def test_the_window_forgets_old_surplus() -> None:
    """A second of full-speed hashing earns no credit: starved afterwards, the loop pauses
    within one window (a surplus older than the window does not count)."""
    share = FairShare(window=0.1)
    now = 0.0
    while now < 1.0:
        assert share.pause_for(now, now, 2 / 3) == 0.0
        now += 0.004
    frozen = now
    pauses = []
    for _ in range(40):  # 160 ms of a busy loop and no hashing
        now += 0.004
        pauses.append(share.pause_for(now, frozen, 2 / 3))
    assert pauses[-1] > 0


def test_tiny_shortfalls_are_carried_over_not_slept() -> None:
    share = FairShare(min_pause=0.001)
    assert share.pause_for(0.0, 0.0, 0.5) == 0.0
    assert share.pause_for(0.0008, 0.0, 0.5) == 0.0  # a 0.8 ms pause: not worth a sleep yet
    # Owed 0.8 ms by now: even after a 1.6 ms pause (half of it is owed too).
    assert share.pause_for(0.0016, 0.0, 0.5) == pytest.approx(0.0016)


# -- the guaranteed share: the pool on a real event loop, CPU time injected --------------------


class FakeCpu:
    """The password threads' CPU time as the test says (None: unknown), and the pauses taken."""

    def __init__(self, value: float | None = 0.0) -> None:
        self.value = value
        self.pauses: list[float] = []

    def __call__(self) -> float | None:
        return self.value

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        time.sleep(seconds)
        if self.value is not None:
            self.value += seconds  # the threads ran the whole pause


def _pool(cpu: FakeCpu) -> PasswordPool:
    return PasswordPool(cpu_time=cpu, pause=cpu.pause, tick=0.001)


async def _run_until(pool: PasswordPool, until: threading.Event) -> None:
    await pool.run(lambda: until.wait(10))


def _hold_one_check(pool: PasswordPool, seconds: float) -> None:
    """One check in progress for about ``seconds`` on a real event loop; the pool closed after."""
    release = threading.Event()

    async def main() -> None:
        check = asyncio.create_task(_run_until(pool, release))
        await asyncio.sleep(seconds)
        release.set()
        await check

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_a_starved_check_makes_the_loop_pause_until_it_ends() -> None:
    cpu = FakeCpu(0.0)  # the threads get nothing: the loop is all there is
    pool = _pool(cpu)
    release = threading.Event()

    async def main() -> tuple[int, int]:
        check = asyncio.create_task(_run_until(pool, release))
        for _ in range(1000):  # bounded: without pauses, gives up after ~1000 ticks
            if len(cpu.pauses) >= 3:
                break
            await asyncio.sleep(0.001)
        release.set()
        await check
        after = len(cpu.pauses)
        await asyncio.sleep(0.05)  # dozens of ticks, were anything still ticking
        return after, len(cpu.pauses)

    try:
        after, later = asyncio.run(main())
    finally:
        pool.close()
    assert after >= 3
    assert later == after  # no check in progress: no pause
    assert pool.in_progress == 0


def test_no_pause_when_the_threads_get_their_share() -> None:
    start = time.monotonic()
    pauses: list[float] = []
    # A whole core for the hashing, as on an idle machine.
    pool = PasswordPool(cpu_time=lambda: time.monotonic() - start, pause=pauses.append, tick=0.001)
    _hold_one_check(pool, 0.05)
    assert pauses == []


def test_no_pause_where_thread_cpu_time_is_unknown() -> None:
    """No per-thread CPU clocks (not Linux): idle priority alone, as before, never a blind pause."""
    cpu = FakeCpu(None)
    _hold_one_check(_pool(cpu), 0.03)
    assert cpu.pauses == []


def test_a_check_the_caller_gave_up_on_still_counts_until_it_ends() -> None:
    cpu = FakeCpu(0.0)
    pool = _pool(cpu)
    release = threading.Event()

    async def main() -> int:
        check = asyncio.create_task(_run_until(pool, release))
        await asyncio.sleep(0.005)
        check.cancel()  # the client hung up; the argon2 call runs on
        await asyncio.gather(check, return_exceptions=True)
        counted = pool.in_progress
        release.set()
        for _ in range(5000):  # bounded
            if not pool.in_progress:
                break
            await asyncio.sleep(0.001)
        return counted

    try:
        assert asyncio.run(main()) == 1
    finally:
        pool.close()


def test_the_pool_reads_its_threads_cpu_clocks() -> None:
    pool = PasswordPool()
    try:
        assert pool.threads_cpu_time() is None  # no thread started yet
        if not hasattr(time, "pthread_getcpuclockid"):
            pytest.skip("no per-thread CPU clocks on this platform")

        def burn() -> None:
            end = time.thread_time() + 0.005
            while time.thread_time() < end:
                pass

        asyncio.run(pool.run(burn))
        used = pool.threads_cpu_time()
        assert used is not None
        assert used >= 0.005
    finally:
        pool.close()


# -- the guaranteed share: real threads, a real busy loop on one core -------------------------


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """This thread (and the threads it starts) on one CPU, so idle priority means idle."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("CPU affinity is Linux's")
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_loop_that_never_idles_still_lets_a_check_finish(one_cpu: int) -> None:
    """The event loop spins (a flood of cheap requests, in effect) on the same core as the
    idle-priority password thread: the check finishes while it spins. Without the guaranteed
    share it finishes only once the spinning stops (after 30 s)."""
    password_hash = hash_password("correct horse battery staple")
    pool = PasswordPool()

    async def main() -> tuple[bool, bool]:
        spinning = True

        async def spin() -> None:
            deadline = time.monotonic() + 30  # bounded: stops by itself
            while spinning and time.monotonic() < deadline:
                end = time.perf_counter() + 0.0005
                while time.perf_counter() < end:
                    pass
                await asyncio.sleep(0)

        spinner = asyncio.create_task(spin())
        ok = await pool.run(lambda: verify_password(password_hash, "correct horse battery staple"))
        during = not spinner.done()
        spinning = False
        await spinner
        return ok, during

    try:
        ok, during = asyncio.run(main())
    finally:
        pool.close()
    assert ok
    assert during, "the check finished only after the busy loop stopped"


# -- over real sockets: a login inside a /healthz flood ------------------------------------------


class PipelinedFlood(threading.Thread):
    """GET /healthz pipelined on one keep-alive connection, always ``depth`` outstanding, so the
    server's event loop never runs out of work; stops when told or after ``seconds``."""

    def __init__(self, port: int, seconds: float = 30.0, depth: int = 64) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seconds = seconds
        self.depth = depth
        self.answered = 0
        self.expired = False
        self.stop = threading.Event()

    def run(self) -> None:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        marker = b"HTTP/1.1 "
        deadline = time.monotonic() + self.seconds
        outstanding = 0
        tail = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            while not self.stop.is_set():
                if time.monotonic() >= deadline:
                    self.expired = True
                    return
                if outstanding < self.depth // 2:
                    sock.sendall(request * (self.depth - outstanding))
                    outstanding = self.depth
                data = sock.recv(65536)
                if not data:
                    return
                seen = tail + data
                answers = seen.count(marker)
                self.answered += answers
                outstanding -= answers
                tail = seen[-(len(marker) - 1) :]


@pytest.mark.e2e
@pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or shutil.which("taskset") is None,
    reason="needs Linux scheduling and taskset",
)
def test_a_login_is_answered_inside_a_healthz_flood(stack: Stack, tmp_path: Path) -> None:
    """The issuer on one core, its event loop kept busy by pipelined /healthz requests: a
    password login is answered while the flood goes on (before: none in 15 s)."""
    client = stack.create_client(scope="photos:read", audiences=["photos"], grants=["password"])
    stack.create_user("alice", "correct horse battery staple", "photos:read")
    cpu = max(os.sched_getaffinity(0))
    server = Server(
        ["taskset", "-c", str(cpu), str(BIN / "issuer"), "serve", "--port", str(stack.issuer_port)],
        {**stack.issuer_env, "KEYHOUSE_TEST_CWD": str(stack.root)},
        stack.issuer_port,
        tmp_path / "issuer-pinned.log",
    )
    stack.servers.append(server)
    server.start()
    flood = PipelinedFlood(stack.issuer_port)
    flood.start()
    try:
        while flood.answered < 500 and flood.is_alive():  # the flood is under way
            time.sleep(0.01)
        before = flood.answered
        response = web.post(
            stack.issuer_url + "/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": "correct horse battery staple",
            },
            auth=(client["client_id"], client["client_secret"]),
            timeout=60,
        )
        inside = flood.is_alive() and not flood.expired
        served = flood.answered - before
    finally:
        flood.stop.set()
        flood.join(timeout=15)
    assert response.status_code == 200, response.text
    assert inside, "the login was answered only after the flood ended"
    assert served > 0  # and the flood kept being answered meanwhile
