"""serving.limits: the deadline and cap policy, with an injected clock."""

from __future__ import annotations

import math

import pytest

from serving.limits import (
    ADDRESS_CAP,
    BODY,
    BUSY,
    FD_RESERVE,
    HEAD,
    IDLE,
    PROCESS_CAP,
    ConnectionLimits,
    ConnectionTable,
    Deadline,
    WarningThrottle,
)
from shared.errors import ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- settings -----------------------------------------------------------------------------------


def test_settings_defaults_and_prefixes() -> None:
    limits = ConnectionLimits.from_env("ISSUER_", {})
    assert limits == ConnectionLimits(prefix="ISSUER_")
    assert (limits.header_timeout, limits.body_timeout) == (10.0, 10.0)
    assert limits.max_connections_per_address < limits.max_connections
    env = {
        "RESOURCE_HEADER_TIMEOUT": "2.5",
        "RESOURCE_BODY_TIMEOUT": "30",
        "RESOURCE_MAX_CONNECTIONS": "100",
        "RESOURCE_MAX_CONNECTIONS_PER_ADDRESS": "7",
        "ISSUER_HEADER_TIMEOUT": "99",  # another service's
    }
    assert ConnectionLimits.from_env("RESOURCE_", env) == ConnectionLimits(
        2.5, 30.0, 100, 7, "RESOURCE_"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ISSUER_HEADER_TIMEOUT", "0"),
        ("ISSUER_HEADER_TIMEOUT", "-1"),
        ("ISSUER_BODY_TIMEOUT", "soon"),
        ("ISSUER_BODY_TIMEOUT", "inf"),
        ("ISSUER_HEADER_TIMEOUT", "nan"),
        ("ISSUER_MAX_CONNECTIONS", "0"),
        ("ISSUER_MAX_CONNECTIONS", "1.5"),
        ("ISSUER_MAX_CONNECTIONS_PER_ADDRESS", "many"),
    ],
)
def test_bad_settings_are_one_line_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ConnectionLimits.from_env("ISSUER_", {name: value})


def test_the_service_settings_carry_their_limits() -> None:
    from issuer.settings import IssuerSettings
    from resource_service.settings import ResourceSettings

    issuer = IssuerSettings.from_env({"ISSUER_MAX_CONNECTIONS_PER_ADDRESS": "5"})
    assert issuer.connections.max_connections_per_address == 5
    assert issuer.connections.prefix == "ISSUER_"
    resource = ResourceSettings.from_env({"RESOURCE_NAME": "photos", "RESOURCE_BODY_TIMEOUT": "3"})
    assert resource.connections.body_timeout == 3.0
    assert resource.connections.prefix == "RESOURCE_"


def test_sweep_interval_follows_the_shorter_deadline() -> None:
    assert ConnectionLimits().sweep_interval == 0.5
    assert ConnectionLimits(header_timeout=1.0).sweep_interval == pytest.approx(0.05)
    assert ConnectionLimits(body_timeout=0.01).sweep_interval == 0.01


def test_the_connection_cap_is_fitted_to_the_descriptor_limit() -> None:
    limits = ConnectionLimits(max_connections=1000, prefix="ISSUER_")
    want = 1000 + FD_RESERVE
    # Room already, or the soft limit can be raised: the cap stays.
    assert limits.fit_descriptors(20000, 20000) == (limits, 20000, None)
    assert limits.fit_descriptors(256, 4096) == (limits, want, None)
    assert limits.fit_descriptors(256, -1) == (limits, want, None)  # unlimited hard limit
    assert limits.fit_descriptors(-1, -1) == (limits, -1, None)  # unlimited: never lowered
    # No room: the cap comes down, and says so.
    fitted, soft, message = limits.fit_descriptors(256, 512)
    assert soft == 512
    assert fitted.max_connections == 512 - FD_RESERVE
    assert message is not None
    assert "ISSUER_MAX_CONNECTIONS=1000" in message


# -- a connection's deadline --------------------------------------------------------------------


def deadline(
    clock: FakeClock, head: float = 10.0, body: float = 10.0, idle: float = 5.0
) -> Deadline:
    return Deadline("127.0.0.1", clock, head, body, idle, owner=None)


def test_a_new_connection_waits_idle_then_for_its_head() -> None:
    clock = FakeClock()
    d = deadline(clock)
    assert (d.phase, d.deadline) == (IDLE, 1005.0)  # keep-alive timeout while nothing arrived
    clock.now = 1004.0
    d.head_begun()
    # The head deadline counts from the moment the connection was ready, not the first byte.
    assert (d.phase, d.deadline) == (HEAD, 1010.0)
    clock.now = 1009.0
    d.head_done()
    assert (d.phase, d.deadline) == (BODY, 1019.0)
    d.body_done()
    assert (d.phase, d.deadline) == (BUSY, math.inf)


def test_the_head_deadline_restarts_after_each_response() -> None:
    clock = FakeClock()
    d = deadline(clock)
    for _ in range(5):
        clock.now += 3
        d.head_begun()
        clock.now += 3
        d.head_done()
        d.body_done()
        clock.now += 100  # the application may take its time
        d.response_done()
        assert (d.phase, d.deadline) == (IDLE, clock.now + 5)
        assert d.ready_at == clock.now


def test_an_idle_timeout_longer_than_the_head_deadline_is_cut_to_it() -> None:
    clock = FakeClock()
    assert deadline(clock, head=1.0, idle=5.0).deadline == 1001.0


def test_pipelined_requests() -> None:
    clock = FakeClock()
    d = deadline(clock)
    d.head_begun()
    d.head_done()
    d.body_done()
    # The next request's first bytes arrive while the first is answered.
    clock.now = 1050.0
    d.head_begun()
    assert (d.phase, d.deadline) == (HEAD, 1060.0)
    # The answer goes out: that head's wait starts over (reading may have been paused).
    clock.now = 1070.0
    d.response_done()
    assert (d.phase, d.deadline) == (HEAD, 1080.0)
    d.head_done()
    d.body_done()
    # A complete pipelined request started in place of the answered one: still busy.
    d.response_done(busy=True)
    assert (d.phase, d.deadline) == (BUSY, math.inf)
    clock.now = 1100.0
    d.response_done()
    assert (d.phase, d.deadline) == (IDLE, 1105.0)


def test_postpone_restarts_the_current_wait() -> None:
    clock = FakeClock()
    d = deadline(clock)
    d.head_begun()
    d.head_done()
    clock.now = 1500.0
    d.postpone()
    assert (d.phase, d.deadline) == (BODY, 1510.0)


def test_detached_never_expires() -> None:
    d = deadline(FakeClock())
    d.detach()
    assert d.deadline == math.inf


# -- the process's table ------------------------------------------------------------------------


def test_caps_refuse_the_newest_per_address_and_per_process() -> None:
    clock = FakeClock()
    table = ConnectionTable(
        ConnectionLimits(max_connections=5, max_connections_per_address=2), clock, 5.0
    )
    a1 = table.admit("10.0.0.1", "a1")
    a2 = table.admit("10.0.0.1", "a2")
    assert isinstance(a1, Deadline)
    assert isinstance(a2, Deadline)
    assert table.admit("10.0.0.1", "a3") == ADDRESS_CAP
    assert table.per_address == {"10.0.0.1": 2}
    others = [table.admit(f"10.0.0.{i}", i) for i in (2, 3, 4)]
    assert all(isinstance(o, Deadline) for o in others)
    assert len(table) == 5
    assert table.admit("10.0.0.9", "late") == PROCESS_CAP
    # Counted out, a slot opens again (for that address, and for the process).
    table.release(a1)
    table.release(a1)  # twice is harmless
    assert table.per_address["10.0.0.1"] == 1
    assert isinstance(table.admit("10.0.0.1", "again"), Deadline)
    assert table.admit("10.0.0.9", "late") == PROCESS_CAP


def test_release_of_the_last_connection_forgets_the_address() -> None:
    table = ConnectionTable(ConnectionLimits(), FakeClock(), 5.0)
    entry = table.admit("10.0.0.1", None)
    assert isinstance(entry, Deadline)
    table.release(entry)
    assert table.per_address == {}
    assert len(table) == 0


def test_expired_lists_the_connections_past_their_deadline() -> None:
    clock = FakeClock()
    table = ConnectionTable(ConnectionLimits(header_timeout=10.0, body_timeout=4.0), clock, 5.0)
    idle = table.admit("a", "idle")
    heading = table.admit("b", "heading")
    bodying = table.admit("c", "bodying")
    busy = table.admit("d", "busy")
    assert isinstance(idle, Deadline)
    assert isinstance(heading, Deadline)
    assert isinstance(bodying, Deadline)
    assert isinstance(busy, Deadline)
    heading.head_begun()
    bodying.head_begun()
    bodying.head_done()
    busy.head_begun()
    busy.head_done()
    busy.body_done()
    assert table.expired() == []
    clock.now += 4.0
    assert {e.owner for e in table.expired()} == {"bodying"}
    clock.now += 1.0
    assert {e.owner for e in table.expired()} == {"bodying", "idle"}
    assert {e.owner for e in table.expired(clock.now + 100)} == {"bodying", "idle", "heading"}


# -- the log throttle ---------------------------------------------------------------------------


def test_one_warning_per_interval_per_kind_with_the_count() -> None:
    clock = FakeClock()
    throttle = WarningThrottle(10.0, clock)
    assert throttle.event("address") == 1
    assert [throttle.event("address") for _ in range(1000)] == [None] * 1000
    assert throttle.event("process") == 1  # another kind has its own budget
    clock.now += 10.0
    assert throttle.event("address") == 1001
    assert throttle.event("address", 5) is None
    clock.now += 10.0
    assert throttle.event("address") == 6
