"""Two issuer processes on one SQLite database: one signing key at every instant, one new key per
rotation even when both decide to rotate at the same moment."""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt as pyjwt
import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.forkserver import launch
from tests.support.processes import BIN, Stack, free_port

pytestmark = pytest.mark.e2e


def _replicas(stack: Stack, **env: str) -> tuple[Server, Server]:
    a = stack.issuer(**env).start()
    port = free_port()
    b = Server(
        [str(BIN / "issuer"), "serve", "--port", str(port)],
        {**stack.issuer_env, **env, "KEYHOUSE_TEST_CWD": str(stack.root)},
        port,
        stack.root / "issuer-b.log",
        launch=launch,
    )
    stack.servers.append(b)
    return a, b.start()


def _token(url: str, client: dict[str, Any], **form: str) -> str:
    response = web.post(
        url + "/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _keys(stack: Stack) -> list[dict[str, Any]]:
    return list(json.loads(stack.cli("keys", "list", "--json").stdout))


def test_replicas_agree_on_the_signing_key_across_a_planned_rotation(stack: Stack) -> None:
    env = {"ISSUER_JWKS_MAX_AGE": "1", "ISSUER_KEY_PUBLISH_AHEAD": "2"}
    a, b = _replicas(stack, **env)
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    assert (
        web.get(a.url + "/healthz").json()["signing_kid"]
        == web.get(b.url + "/healthz").json()["signing_kid"]
    )
    old_kid = pyjwt.get_unverified_header(_token(a.url, client))["kid"]

    # Both replicas are asked for tokens from before the rotation is made until a second after
    # it takes effect, so samples on both sides of the activation exist however long the CLI
    # takes to start on a loaded machine (it once took longer than the publish-ahead).
    samples: list[tuple[float, float, str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    hard_deadline = time.time() + 60

    def hammer(server: Server) -> None:
        with web.Client(timeout=10) as http:
            while not stop.is_set() and time.time() < hard_deadline:
                started = time.time()
                response = http.post(
                    server.url + "/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client["client_id"], client["client_secret"]),
                )
                done = time.time()
                assert response.status_code == 200, response.text
                kid = pyjwt.get_unverified_header(response.json()["access_token"])["kid"]
                with lock:
                    samples.append((started, done, server.url, kid))

    with ThreadPoolExecutor(4) as pool:
        hammering = [pool.submit(hammer, s) for s in (a, b, a, b)]
        try:
            rotation = json.loads(stack.cli("keys", "rotate", "--json", env=env).stdout)
            new_kid, activate_at = rotation["kid"], rotation["activate_at"]
            assert rotation["previous_kid"] == old_kid
            assert activate_at - rotation["publish_at"] >= 2

            # Both replicas publish the new key ahead, with identical JWKS documents.
            time.sleep(0.5)
            docs = [web.get(s.url + "/.well-known/jwks.json") for s in (a, b)]
            assert docs[0].content == docs[1].content
            assert docs[0].headers["etag"] == docs[1].headers["etag"]
            assert {k["kid"] for k in docs[0].json()["keys"]} == {old_kid, new_kid}

            assert activate_at < time.time() + 5
            time.sleep(max(0.0, activate_at + 1.0 - time.time()))
        finally:
            stop.set()
        for future in hammering:
            future.result()

    # The signing key is a function of the time: every token issued wholly before the
    # activation carries the old kid, every token issued wholly after it the new kid - from
    # either replica.
    before = [s for s in samples if s[1] < activate_at]
    after = [s for s in samples if s[0] >= activate_at]
    assert {s[3] for s in before} == {old_kid}
    assert {s[3] for s in after} == {new_kid}
    for server in (a, b):
        assert any(s[2] == server.url for s in before)
        assert any(s[2] == server.url for s in after)


def test_concurrent_rotations_on_two_replicas_create_one_key(stack: Stack) -> None:
    """Both replicas get a planned rotation at the same moment, right after the previous
    rotation took effect (when the scheduler may not have made the next key yet): one key."""
    env = {"ISSUER_JWKS_MAX_AGE": "1", "ISSUER_KEY_PUBLISH_AHEAD": "1"}
    a, b = _replicas(stack, **env)
    admin = stack.create_client(scope="issuer:admin", audiences=["issuer"])

    def activated() -> set[str]:
        now = time.time()
        return {k["kid"] for k in _keys(stack) if k["activate_at"] <= now}

    for _round in range(4):
        before = activated()
        started = time.time()
        tokens = [_token(s.url, admin, audience="issuer", scope="issuer:admin") for s in (a, b)]
        barrier = threading.Barrier(2, timeout=10)

        def rotate(args: tuple[Server, str]) -> dict[str, Any]:
            server, token = args
            barrier.wait()
            response = web.post(
                server.url + "/admin/keys/rotate",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert response.status_code in {200, 201}, response.text
            return dict(response.json())

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(rotate, zip((a, b), tokens, strict=True)))
        kid = results[0]["kid"]
        assert results[1]["kid"] == kid
        assert results[0]["activate_at"] == results[1]["activate_at"]
        assert sum(r["created"] for r in results) <= 1
        # Exactly one key entered the JWKS in this round.
        published = [k for k in _keys(stack) if started <= k["publish_at"] <= time.time()]
        assert [k["kid"] for k in published] == [kid]
        time.sleep(max(0.0, results[0]["activate_at"] - time.time()) + 0.05)
        assert activated() - before == {kid}
        for server in (a, b):
            deadline = time.time() + 5
            while web.get(server.url + "/healthz").json()["signing_kid"] != kid:
                assert time.time() < deadline
                time.sleep(0.05)


def test_two_schedulers_create_one_successor_per_rotation(stack: Stack) -> None:
    """Both replicas run the rotation scheduler every 0.2 s; each generation gets one key."""
    interval, ahead = 3.0, 1.0
    env = {
        "ISSUER_KEY_ROTATION_INTERVAL": "3",
        "ISSUER_JWKS_MAX_AGE": "1",
        "ISSUER_KEY_PUBLISH_AHEAD": "1",
    }
    a, b = _replicas(stack, **env)
    # The first key is made while the first replica starts, and its successor at the first
    # scheduler tick after the server is up. On a loaded machine that tick (or a later one: a
    # scheduler stalled for over interval - ahead = 2 s) comes after the successor's planned
    # publish time, and the schedule then publishes it at once and activates it `ahead` later:
    # that gap is longer than the interval (it failed the test's old "every gap is exactly 3 s"
    # in 19 of 20 runs, three at once, load ~10). Count three generations from the first key
    # the schedulers made.
    deadline = time.time() + 60
    keys = _keys(stack)
    while len(keys) < 2:
        assert time.time() < deadline
        time.sleep(0.2)
        keys = _keys(stack)
    second = sorted(keys, key=lambda k: k["activate_at"])[1]
    while time.time() < second["activate_at"] + 2 * interval + 0.5:
        assert time.time() < deadline
        time.sleep(0.2)
    keys = sorted(_keys(stack), key=lambda k: k["activate_at"])
    assert len(keys) >= 4
    # One key per slot on the schedule, none twice: each key's times are exactly the schedule's
    # for its predecessor at the moment the scheduler made it (created_at): activation one
    # interval after the predecessor's, published `ahead` before it, or, when the scheduler ran
    # after that publish time, published when made and activated `ahead` later. A second key
    # for one slot would follow its twin with a gap of 0, not an interval.
    for previous, key in itertools.pairwise(keys):
        planned = previous["activate_at"] + interval
        publish = max(key["created_at"], planned - ahead)
        assert (key["publish_at"], key["activate_at"]) == (publish, max(planned, publish + ahead))
    for key in keys[1:]:
        assert key["activate_at"] - key["publish_at"] >= 1
    assert len([k for k in keys if k["state"] == "active"]) == 1
    # Both replicas sign with the key the schedule names for the moment they were asked. A
    # sample that straddles an activation says nothing (either key is right), so take another.
    for _attempt in range(10):
        asked = time.time()
        kids = {web.get(s.url + "/healthz").json()["signing_kid"] for s in (a, b)}
        answered = time.time()
        keys = _keys(stack)
        if not any(asked < k["activate_at"] <= answered for k in keys):
            break
    else:
        pytest.fail("every sample straddled an activation")
    due = max((k for k in keys if k["activate_at"] <= asked), key=lambda k: k["activate_at"])
    assert kids == {due["kid"]}
