"""Against real issuer processes: concurrent double refresh, and throttling shared by replicas."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.forkserver import launch
from tests.support.processes import Stack, free_port

pytestmark = pytest.mark.e2e

PAIRS = 30
PASSWORD = "correct horse battery"


def _refresh(url: str, client: dict[str, Any], rt: str) -> httpx.Response:
    return web.post(
        url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt},
        auth=(client["client_id"], client["client_secret"]),
        timeout=30,
    )


def test_concurrent_double_refresh_succeeds_exactly_once(stack: Stack) -> None:
    server = stack.issuer()
    server.args += ["--workers", "2"]  # two processes racing on one database, like replicas
    server.start()
    client = stack.create_client(
        scope="photos:read", audiences=["photos"], grants=["password", "refresh_token"]
    )
    stack.create_user("alice", PASSWORD, "photos:read")
    login = stack.token(client, grant_type="password", username="alice", password=PASSWORD)
    tokens = [
        login["refresh_token"],
        *stack.sign_ins(client, "alice", PAIRS - 1, audience="photos", scope=login["scope"]),
    ]

    barrier = threading.Barrier(PAIRS * 2)

    def fire(rt: str) -> httpx.Response:
        barrier.wait()
        return _refresh(stack.issuer_url, client, rt)

    with ThreadPoolExecutor(max_workers=PAIRS * 2) as pool:
        futures = [(rt, pool.submit(fire, rt)) for rt in tokens for _ in range(2)]
        results: dict[str, list[httpx.Response]] = {}
        for rt, future in futures:
            results.setdefault(rt, []).append(future.result())

    for rt, (a, b) in results.items():
        statuses = sorted([a.status_code, b.status_code])
        assert statuses == [200, 400], (statuses, a.text, b.text)
        loser = a if a.status_code == 400 else b
        winner = b if loser is a else a
        assert loser.json()["error"] == "invalid_grant"
        # The second presentation is reuse: the family is ended, the winner's successor too.
        successor = winner.json()["refresh_token"]
        assert _refresh(stack.issuer_url, client, successor).status_code == 400

    events = json.loads(stack.cli("audit", "--json", "--limit", "1000").stdout)
    assert sum(e["event"] == "refresh_token_reuse" for e in events) == PAIRS
    for rt in tokens:
        assert rt not in json.dumps(events)


def test_throttling_holds_across_replicas(stack: Stack) -> None:
    limits = {"ISSUER_LOGIN_MAX_FAILURES": "3", "ISSUER_LOGIN_FAILURE_WINDOW": "600"}
    first = stack.issuer(**limits).start()
    port = free_port()
    second = Server(
        [*first.args[:-1], str(port)],
        {**first.env, **limits},
        port,
        stack.root / "issuer2.log",
        launch=launch,
    )
    stack.servers.append(second)
    second.start()
    client = stack.create_client(
        scope="photos:read", audiences=["photos"], grants=["password", "refresh_token"]
    )
    stack.create_user("alice", PASSWORD, "photos:read")

    def login(server: Server, password: str) -> httpx.Response:
        return web.post(
            server.url + "/token",
            data={"grant_type": "password", "username": "alice", "password": password},
            auth=(client["client_id"], client["client_secret"]),
            timeout=30,
        )

    assert login(first, "guess-1").status_code == 400
    assert login(second, "guess-2").status_code == 400
    assert login(first, "guess-3").status_code == 400
    blocked = login(second, PASSWORD)
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "slow_down"
    assert 590 <= int(blocked.headers["retry-after"]) <= 600
    assert blocked.headers["cache-control"] == "no-store"
    assert login(first, PASSWORD).status_code == 429
    for server in (first, second):
        assert "guess-" not in server.logs()
        assert PASSWORD not in server.logs()
