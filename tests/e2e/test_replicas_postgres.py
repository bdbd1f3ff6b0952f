"""Two issuer processes on one PostgreSQL database, with real processes and sockets.

Replica A and replica B share ISSUER_URL (the public ``iss``), the secret key and the database;
each listens on its own loopback port. ``photos`` fetches its keys from A (discovery) and
``contacts`` from B (RESOURCE_JWKS_URL), so both replicas' JWKS are exercised.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from bench.harness.processes import Server
from tests.support import web
from tests.support.postgres import PostgresServer
from tests.support.processes import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "correct horse battery"


@dataclass
class Replicas:
    stack: Stack
    a: Server
    b: Server
    photos: Server
    contacts: Server
    client: dict[str, Any]


NO_GRACE = {"ISSUER_REFRESH_REPLAY_GRACE": "0"}
GRACE = {"ISSUER_REFRESH_REPLAY_GRACE": "10"}


@pytest.fixture
def replica_env() -> dict[str, str]:
    """Extra environment of both replicas (a test overrides it with ``parametrize``)."""
    return {}


@pytest.fixture
def replicas(
    tmp_path: Path, postgres_server: PostgresServer, replica_env: dict[str, str]
) -> Iterator[Replicas]:
    name = f"replicas_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    stack = Stack(tmp_path, database_url=url)
    try:
        # Start both at once: two processes creating the schema and the first key concurrently.
        a, b = stack.issuer(**replica_env), stack.issuer_replica("b", **replica_env)
        threads = [threading.Thread(target=s.start) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for s in (a, b):
            if s.proc is None or s.proc.poll() is not None:
                raise AssertionError(f"issuer replica did not start:\n{s.logs()}")
            web.get(s.url + "/healthz", timeout=5).raise_for_status()
        photos = stack.resource("photos").start()
        contacts = stack.resource(
            "contacts", RESOURCE_JWKS_URL=b.url + "/.well-known/jwks.json"
        ).start()
        client = stack.create_client(
            scope="photos:read contacts:read issuer:admin",
            audiences=["photos", "contacts", "issuer"],
            grants=["client_credentials", "password", "refresh_token"],
        )
        stack.create_user("alice", PASSWORD, "photos:read contacts:read")
        yield Replicas(stack, a, b, photos, contacts, client)
    finally:
        stack.stop_all()
        postgres_server.drop_database(name)


def _whoami(server: Server, token: str) -> httpx.Response:
    return web.get(server.url + "/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _token_at(r: Replicas, issuer: Server, **form: str) -> dict[str, Any]:
    return r.stack.token(r.client, at=issuer.url, **form)


def _post_token(r: Replicas, issuer: Server, **form: str) -> httpx.Response:
    return web.post(
        issuer.url + "/token",
        data=form,
        auth=(r.client["client_id"], r.client["client_secret"]),
        timeout=30,
    )


def _introspect(r: Replicas, token: str) -> dict[str, Any]:
    response = web.post(
        r.a.url + "/introspect",
        data={"token": token},
        auth=(r.client["client_id"], r.client["client_secret"]),
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def _kid(token: str) -> str:
    return str(pyjwt.get_unverified_header(token)["kid"])


def _login(r: Replicas, issuer: Server) -> str:
    body = _token_at(
        r, issuer, grant_type="password", username="alice", password=PASSWORD, audience="photos"
    )
    return str(body["refresh_token"])


def test_tokens_from_either_replica_verify_at_both_services(replicas: Replicas) -> None:
    r = replicas
    for issuer in (r.a, r.b):
        for service, name in ((r.photos, "photos"), (r.contacts, "contacts")):
            token = _token_at(r, issuer, audience=name, scope=f"{name}:read")["access_token"]
            who = _whoami(service, token)
            assert who.status_code == 200, (issuer.url, name, who.text)
            assert who.json()["claims"]["iss"] == r.stack.issuer_url
    # Both replicas sign with the same key and publish the same set.
    jwks_a = web.get(r.a.url + "/.well-known/jwks.json", timeout=5).json()
    jwks_b = web.get(r.b.url + "/.well-known/jwks.json", timeout=5).json()
    assert {k["kid"] for k in jwks_a["keys"]} == {k["kid"] for k in jwks_b["keys"]}
    # The two replicas started at once on an empty database: the first key is one row (its
    # creation slot is unique), so exactly one key is published and both sign with it.
    assert len(jwks_a["keys"]) == 1, jwks_a
    kids = {
        _kid(_token_at(r, issuer, audience="photos", scope="photos:read")["access_token"])
        for issuer in (r.a, r.b)
    }
    assert kids == {jwks_a["keys"][0]["kid"]}


def test_rotation_on_a_is_served_by_b(replicas: Replicas) -> None:
    r = replicas
    old_b = _token_at(r, r.b, audience="contacts", scope="contacts:read")["access_token"]
    old_kid = _kid(old_b)
    admin = _token_at(r, r.a, audience="issuer", scope="issuer:admin")["access_token"]
    rotated = web.post(
        r.a.url + "/admin/keys/rotate?now=true",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert rotated.status_code in (200, 201), rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid

    # B reloads keys from the database every ISSUER_KEY_REFRESH_INTERVAL (0.2 s here): within a
    # bounded wait its tokens carry the new kid and its JWKS publishes it.
    deadline = time.monotonic() + 10
    while True:
        new_b = _token_at(r, r.b, audience="contacts", scope="contacts:read")["access_token"]
        if _kid(new_b) == new_kid or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _kid(new_b) == new_kid
    jwks_b = web.get(r.b.url + "/.well-known/jwks.json", timeout=5).json()
    assert new_kid in {k["kid"] for k in jwks_b["keys"]}

    # contacts (keys from B) and photos (keys from A) accept the new tokens, and the old one.
    assert _whoami(r.contacts, new_b).status_code == 200
    assert _whoami(r.contacts, old_b).status_code == 200
    new_photos = _token_at(r, r.b, audience="photos", scope="photos:read")["access_token"]
    assert _kid(new_photos) == new_kid
    assert _whoami(r.photos, new_photos).status_code == 200


@pytest.mark.parametrize("replica_env", [GRACE])
def test_refresh_replayed_on_b_within_the_grace_is_answered_again(replicas: Replicas) -> None:
    """A's answer lost after its commit (a replica killed, HAProxy resending the request to B):
    within ISSUER_REFRESH_REPLAY_GRACE (10 s here; off by default) B answers the same refresh
    token again, with a working new successor. A's successor, never delivered, is spent:
    presented later it ends the family."""
    r = replicas
    rt1 = _login(r, r.a)
    from_a = _token_at(r, r.a, grant_type="refresh_token", refresh_token=rt1)["refresh_token"]

    replay = _post_token(r, r.b, grant_type="refresh_token", refresh_token=rt1)
    assert replay.status_code == 200, replay.text
    from_b = replay.json()["refresh_token"]
    assert from_b not in (rt1, from_a)
    assert _whoami(r.photos, replay.json()["access_token"]).status_code == 200
    onward = _post_token(r, r.a, grant_type="refresh_token", refresh_token=from_b)
    assert onward.status_code == 200, onward.text  # B's successor works, at either replica

    spent = _post_token(r, r.a, grant_type="refresh_token", refresh_token=from_a)
    assert spent.status_code == 400, spent.text
    assert spent.json()["error"] == "invalid_grant"
    # The family is revoked: the chain that went on from B's answer is dead too, at both.
    latest = onward.json()["refresh_token"]
    for issuer in (r.b, r.a):
        dead = _post_token(r, issuer, grant_type="refresh_token", refresh_token=latest)
        assert dead.status_code == 400, dead.text
        assert dead.json()["error"] == "invalid_grant"
    events = r.stack.cli("audit", "--json", "--limit", "100").stdout
    assert "refresh_replay_within_grace" in events
    assert "refresh_token_reuse" in events
    for token in (rt1, from_a, from_b, latest):
        assert token not in events


@pytest.mark.parametrize("replica_env", [NO_GRACE])
def test_refresh_rotated_on_a_and_replayed_on_b_is_reuse(replicas: Replicas) -> None:
    """ISSUER_REFRESH_REPLAY_GRACE=0: a replay is reuse at once, as before the grace existed."""
    r = replicas
    rt1 = _login(r, r.a)
    rotated = _token_at(r, r.a, grant_type="refresh_token", refresh_token=rt1)
    rt2 = rotated["refresh_token"]
    assert rt2 != rt1
    assert _whoami(r.photos, rotated["access_token"]).status_code == 200

    replay = _post_token(r, r.b, grant_type="refresh_token", refresh_token=rt1)
    assert replay.status_code == 400, replay.text
    assert replay.json()["error"] == "invalid_grant"
    # Reuse revokes the whole family: the successor issued by A is dead too, at both replicas.
    for issuer in (r.b, r.a):
        successor = _post_token(r, issuer, grant_type="refresh_token", refresh_token=rt2)
        assert successor.status_code == 400, successor.text
        assert successor.json()["error"] == "invalid_grant"


def _refresh_at_both_at_once(r: Replicas, rt: str) -> dict[str, httpx.Response]:
    """Present refresh token ``rt`` to replica a and replica b at the same moment (each on a
    connection opened before the race); their answers by replica label."""
    barrier = threading.Barrier(2, timeout=30)
    results: dict[str, httpx.Response] = {}
    errors: list[BaseException] = []

    def redeem(issuer: Server, label: str) -> None:
        try:
            with web.Client(timeout=30) as http:
                http.get(issuer.url + "/healthz")  # connection up before the race
                barrier.wait()
                results[label] = http.post(
                    issuer.url + "/token",
                    data={"grant_type": "refresh_token", "refresh_token": rt},
                    auth=(r.client["client_id"], r.client["client_secret"]),
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=redeem, args=(r.a, "a")),
        threading.Thread(target=redeem, args=(r.b, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("replica_env", [NO_GRACE])
def test_same_refresh_token_at_both_replicas_at_once_succeeds_once(replicas: Replicas) -> None:
    """Without the grace the database's conditional UPDATE is the only arbiter: one 200."""
    r = replicas
    trials = 25
    # One sign-in through each replica, the others stored as sign-ins are (their argon2 checks
    # are not the subject).
    first = _token_at(
        r, r.a, grant_type="password", username="alice", password=PASSWORD, audience="photos"
    )
    tokens = [first["refresh_token"], _login(r, r.b)]
    scope = first["scope"]
    tokens += r.stack.sign_ins(r.client, "alice", trials - 2, audience="photos", scope=scope)
    for trial, rt in enumerate(tokens):
        results = _refresh_at_both_at_once(r, rt)
        statuses = sorted(resp.status_code for resp in results.values())
        assert statuses == [200, 400], (trial, {k: v.text for k, v in results.items()})
        loser = next(resp for resp in results.values() if resp.status_code == 400)
        assert loser.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("replica_env", [GRACE])
def test_same_refresh_token_at_both_replicas_at_once_leaves_one_live_chain(
    replicas: Replicas,
) -> None:
    """With the grace on (ISSUER_REFRESH_REPLAY_GRACE=10) two presentations at once look like a
    retry whose answer was lost: both are answered, one after the other, and only the later
    answer's successor is live (the earlier one's is spent). Never two live chains, never a
    revoked family."""
    r = replicas
    for trial in range(6):
        rt = _login(r, r.a if trial % 2 else r.b)
        results = _refresh_at_both_at_once(r, rt)
        assert sorted(resp.status_code for resp in results.values()) == [200, 200], (
            trial,
            {k: v.text for k, v in results.items()},
        )
        active = [_introspect(r, resp.json()["refresh_token"]) for resp in results.values()]
        assert sorted(bool(a.get("active")) for a in active) == [False, True], (trial, active)
