"""``X-Forwarded-For`` is honoured only from the proxies named by ``--forwarded-allow-ips``.

The login throttle and the audit log count failures per peer address. uvicorn's default trusts
the header from 127.0.0.1, so anything on the host could spread its failures over invented
addresses; by default Keyhouse trusts no one.
"""

from __future__ import annotations

import json

import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

SPOOFED = "203.0.113.7"


def _failed_login_address(stack: Stack) -> str:
    response = web.post(
        stack.issuer_url + "/token",
        data={"grant_type": "client_credentials"},
        auth=("no-such-client", "wrong"),
        headers={"X-Forwarded-For": SPOOFED},
        timeout=10,
    )
    assert response.status_code == 401
    events = json.loads(stack.cli("audit", "--json", "--limit", "1").stdout)
    assert events[0]["event"] == "client_auth_failed"
    return str(events[0]["address"])


def test_x_forwarded_for_is_ignored_by_default(stack: Stack) -> None:
    stack.issuer().start()
    assert _failed_login_address(stack) == "127.0.0.1"


def test_x_forwarded_for_is_honoured_from_a_named_proxy(stack: Stack) -> None:
    stack.issuer("--forwarded-allow-ips", "127.0.0.1").start()
    assert _failed_login_address(stack) == SPOOFED
