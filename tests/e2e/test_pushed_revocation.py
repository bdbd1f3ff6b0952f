"""Revocation pushed to resource services (issue 17 §2), with real processes.

A real issuer, photos and contacts, whose JWKS poll is set to 60 s so that only the pushed events
can explain a refusal within a second: after ``/revoke`` of an access token, a refresh-token
reuse, ``issuer users disable`` and ``issuer keys revoke``, both services refuse the affected
tokens within 1 s and keep accepting the others. The issuer is killed and an event recorded (by
the CLI, on the database) while it is down: once it is back, the services resume from their
last event and apply it (nothing lost). A forged event (wrong key, wrong ``iss``, an access token
sent as an event, a replayed event) changes nothing at a real photos process subscribed to a
small fake issuer on 127.0.0.1 (its JWKS and an SSE stream of the test's own events).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from bench.harness.processes import Server
from shared import security_events as se
from shared.jwks import encode_jwks
from shared.keys import SigningKey
from shared.tokens import TokenSigner, access_token_claims
from tests.e2e.oidc_world import unverified_claims
from tests.support import web
from tests.support.jwks_fakes import key
from tests.support.local_http import LocalServer
from tests.support.processes import Stack, free_port

pytestmark = pytest.mark.e2e

PUSH_BOUND = 1.0  # seconds from the issuer's action to the first refusal, at every service
# Keys polled once a minute: a refusal within a second is the push, not a poll.
SERVICE_ENV = {
    "RESOURCE_JWKS_POLL_INTERVAL": "60",
    "RESOURCE_JWKS_MIN_TTL": "60",
    "RESOURCE_EVENTS_MAX_RETRY_BACKOFF": "1",
}
ISSUER_ENV = {"ISSUER_EVENTS_HEARTBEAT": "1"}
PASSWORD = "correct horse battery"


_HTTP = web.Client(timeout=5)  # one keep-alive connection per service: cheap 10 ms polls


def whoami(service: Server, token: str) -> httpx.Response:
    return _HTTP.get(service.url + "/whoami", headers={"Authorization": f"Bearer {token}"})


def accepted(service: Server, token: str) -> None:
    response = whoami(service, token)
    assert response.status_code == 200, response.text


REVOKED = ("the token has been revoked",)
# A revoked signing key's tokens: the event is signed by the replacement key, which the service
# fetches to verify it; a request that lands between that fetch (the key set without the revoked
# key) and the event's rule being applied is refused as signed by an unknown key. Either way the
# refusal is the push's doing: the services poll their keys once a minute here.
KEY_REVOKED = (*REVOKED, "token signed with an unknown key")


def refusal_time(
    service: Server,
    token: str,
    since: float,
    bound: float = PUSH_BOUND,
    reasons: tuple[str, ...] = REVOKED,
) -> float:
    """Seconds from ``since`` to the first 'revoked' refusal of ``token`` (polled every 10 ms);
    fails past ``bound`` (plus a margin to say by how much)."""
    while True:
        response = whoami(service, token)
        elapsed = time.monotonic() - since
        if response.status_code == 401:
            assert response.json()["error_description"] in reasons
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < bound + 5, f"{service.name} still accepts the token after {elapsed:.1f}s"
        time.sleep(0.01)


def events(service: Server) -> dict[str, Any]:
    state: dict[str, Any] = web.get(service.url + "/healthz", timeout=5).json()["events"]
    return state


def wait_connected(*services: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for service in services:
        while events(service)["state"] != "connected":
            assert time.monotonic() < deadline, f"{service.name}: {events(service)}"
            time.sleep(0.05)


class World:
    """The issuer, photos and contacts; a client for both audiences; alice and bob."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.issuer = stack.issuer(**ISSUER_ENV).start()
        self.client = stack.create_client(
            scope="photos:read contacts:read",
            audiences=["photos", "contacts"],
            grants=("client_credentials", "password", "refresh_token"),
        )
        stack.create_user("alice", PASSWORD, "photos:read contacts:read")
        stack.create_user("bob", PASSWORD, "photos:read contacts:read")
        self.photos = stack.resource("photos", **SERVICE_ENV).start()
        self.contacts = stack.resource("contacts", **SERVICE_ENV).start()
        self.services = (self.photos, self.contacts)
        wait_connected(*self.services)

    def app_token(self, audience: str) -> str:
        return str(self.stack.token(self.client, audience=audience)["access_token"])

    def login(self, user: str, audience: str) -> dict[str, Any]:
        return self.stack.token(
            self.client, grant_type="password", username=user, password=PASSWORD, audience=audience
        )

    def both(self, make: Any) -> dict[Server, str]:
        """A token per service, from ``make(audience)``."""
        return {service: make(service.name) for service in self.services}

    def assert_refused_in_time(
        self, tokens: dict[Server, str], since: float, reasons: tuple[str, ...] = REVOKED
    ) -> None:
        for service, token in tokens.items():
            took = refusal_time(service, token, since, reasons=reasons)
            print(f"{service.name}: refused {took * 1000:.0f} ms after the action")
            assert took < PUSH_BOUND, f"{service.name} refused after {took:.3f}s"

    def assert_accepted(self, tokens: dict[Server, str]) -> None:
        for service, token in tokens.items():
            accepted(service, token)


@pytest.fixture
def world(stack: Stack) -> World:
    return World(stack)


def test_revoke_of_an_access_token(world: World) -> None:
    revoked = world.app_token("photos")
    others = world.both(world.app_token)
    accepted(world.photos, revoked)  # verified and cached before the event
    response = web.post(
        world.stack.issuer_url + "/revoke",
        data={"token": revoked},
        auth=(world.client["client_id"], world.client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200
    since = time.monotonic()
    world.assert_refused_in_time({world.photos: revoked}, since)
    world.assert_accepted(others)
    # Contacts got the event too (the token was never valid there: another audience).
    deadline = time.monotonic() + PUSH_BOUND
    while events(world.contacts)["applied"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_refresh_token_reuse_ends_the_family_everywhere(world: World) -> None:
    login = world.login("alice", "photos")
    family = {world.photos: login["access_token"]}
    # The family's refreshed token for contacts: the same fid.
    refreshed = world.stack.token(
        world.client,
        grant_type="refresh_token",
        refresh_token=login["refresh_token"],
        audience="contacts",
    )
    family[world.contacts] = refreshed["access_token"]
    assert {unverified_claims(t)["fid"] for t in family.values()} == {
        unverified_claims(login["access_token"])["fid"]
    }
    other_family = world.both(lambda aud: world.login("alice", aud)["access_token"])
    world.assert_accepted(family)
    reuse = web.post(
        world.stack.issuer_url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
        auth=(world.client["client_id"], world.client["client_secret"]),
        timeout=10,
    )
    assert reuse.status_code == 400
    since = time.monotonic()
    world.assert_refused_in_time(family, since)
    world.assert_accepted(other_family)  # alice's other sign-in is not that family


def test_a_disabled_user_is_refused_and_others_are_not(world: World) -> None:
    alice = world.both(lambda aud: world.login("alice", aud)["access_token"])
    bob = world.both(lambda aud: world.login("bob", aud)["access_token"])
    world.assert_accepted(alice)
    world.stack.cli("users", "disable", "alice")
    since = time.monotonic()
    world.assert_refused_in_time(alice, since)
    world.assert_accepted(bob)
    world.assert_accepted(world.both(world.app_token))
    # Enabled again, alice's new tokens are not covered (issued after the event).
    world.stack.cli("users", "enable", "alice")
    time.sleep(1.1)  # a new token's iat must pass the event's second
    world.assert_accepted(world.both(lambda aud: world.login("alice", aud)["access_token"]))


def test_a_revoked_signing_key_is_refused_at_once(world: World) -> None:
    old = world.both(world.app_token)
    world.assert_accepted(old)
    old_kid = unverified_header_kid(next(iter(old.values())))
    world.stack.cli("keys", "revoke", old_kid)
    since = time.monotonic()
    world.assert_refused_in_time(old, since, KEY_REVOKED)
    # The replacement key signs new tokens; both services take them (an unknown kid is fetched).
    deadline = time.monotonic() + 10
    new = world.both(world.app_token)
    while any(unverified_header_kid(t) == old_kid for t in new.values()):
        assert time.monotonic() < deadline, "the issuer still signs with the revoked key"
        time.sleep(0.1)
        new = world.both(world.app_token)
    world.assert_accepted(new)
    # The revoked key left each service's key set at once (the event asked for a fetch).
    for service in world.services:
        keys = web.get(service.url + "/healthz", timeout=5).json()["jwks"]["keys"]
        assert old_kid not in keys


def unverified_header_kid(token: str) -> str:
    return str(pyjwt.get_unverified_header(token)["kid"])


def test_an_event_recorded_while_the_issuer_is_down_is_not_lost(world: World) -> None:
    alice = world.both(lambda aud: world.login("alice", aud)["access_token"])
    bob = world.both(lambda aud: world.login("bob", aud)["access_token"])
    revoked = world.app_token("contacts")
    web.post(
        world.stack.issuer_url + "/revoke",
        data={"token": revoked},
        auth=(world.client["client_id"], world.client["client_secret"]),
        timeout=10,
    ).raise_for_status()
    refusal_time(world.contacts, revoked, time.monotonic(), bound=5)  # applied before the crash
    last = {service: events(service)["last_event_id"] for service in world.services}
    world.issuer.stop(kill=True)  # a crash: no goodbye on the streams
    world.stack.cli("users", "disable", "alice")  # recorded in the database, pushed by no one
    time.sleep(1.5)  # the services try to reconnect meanwhile and fail
    for service in world.services:
        assert events(service)["state"] in ("down", "connecting")
        assert events(service)["last_event_id"] == last[service]
    world.assert_accepted(alice)  # not known yet: the subscription is down
    world.issuer.start()
    since = time.monotonic()
    for service, token in alice.items():
        took = refusal_time(service, token, since, bound=5)  # reconnection backoff: <= 1 s
        assert took < 3, f"{service.name} applied the missed event after {took:.1f}s"
    world.assert_accepted(bob)
    for service in world.services:
        state = events(service)
        assert state["state"] == "connected"
        assert int(state["last_event_id"]) > int(last[service])
    accepted_again = world.stack.token(world.client, audience="contacts")["access_token"]
    accepted(world.contacts, accepted_again)
    assert whoami(world.contacts, revoked).status_code == 401  # still refused after it all


# -- forged events, at a real photos process subscribed to a fake issuer ----------------------


class FakeEventIssuer:
    """A fake issuer on 127.0.0.1: ``/.well-known/jwks.json`` publishes ``key(0)``; ``/events``
    streams what the test puts in ``messages`` (ids 1, 2, ...), with keepalives."""

    def __init__(self, signing: SigningKey) -> None:
        self.jwks = encode_jwks({"keys": [signing.public_jwk()]})
        self.messages: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/.well-known/jwks.json"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(fake.jwks)))
                    self.end_headers()
                    self.wfile.write(fake.jwks)
                elif self.path == "/events":
                    fake.stream(self)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = LocalServer(Handler, port=free_port())
        self.url = self._server.url

    def stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.connections += 1
        sent = int(handler.headers.get("Last-Event-ID") or 0)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            handler.wfile.write(b": keepalive\n\n")
            handler.wfile.flush()
            while not self._stop.is_set():
                with self._lock:
                    pending = self.messages[sent:]
                for data in pending:
                    sent += 1
                    handler.wfile.write(f"id: {sent}\nevent: set\ndata: {data}\n\n".encode())
                handler.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass  # the subscriber went away

    def push(self, data: str) -> None:
        with self._lock:
            self.messages.append(data)

    def start(self) -> FakeEventIssuer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.stop()


@pytest.fixture
def fake_issuer() -> Iterator[FakeEventIssuer]:
    fake = FakeEventIssuer(key(0)).start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_forged_event_changes_nothing(stack: Stack, fake_issuer: FakeEventIssuer) -> None:
    photos = stack.resource(
        "photos",
        RESOURCE_ISSUER=fake_issuer.url,
        RESOURCE_JWKS_URL=fake_issuer.url + "/.well-known/jwks.json",
        RESOURCE_JWKS_POLL_INTERVAL="60",
    ).start()
    wait_connected(photos)
    now = int(time.time())

    def access(jti: str) -> str:
        claims = access_token_claims(
            issuer=fake_issuer.url,
            subject="user:alice",
            audience="photos",
            client_id="app",
            scopes=frozenset({"photos:read"}),
            now=now,
            ttl=900,
            jti=jti,
        )
        return TokenSigner(key(0)).sign(claims)

    target, genuine_target = access("target-jti-0123456789ab"), access("genuine-jti-0123456789")
    accepted(photos, target)
    accepted(photos, genuine_target)

    def revoke(jti: str, issuer: str = fake_issuer.url) -> dict[str, Any]:
        return se.token_revoked(issuer=issuer, now=now, token_jti=jti, exp=now + 900)

    impostor = SigningKey(kid=key(0).kid, private_key=key(1).private_key)
    forged = [
        se.sign_set(revoke("target-jti-0123456789ab"), impostor),  # the right kid, wrong key
        se.sign_set(revoke("target-jti-0123456789ab"), key(1)),  # a key the issuer never had
        se.sign_set(revoke("target-jti-0123456789ab", "https://evil.example"), key(0)),
        target,  # an access token sent as an event
    ]
    for data in forged:
        fake_issuer.push(data)
    genuine = se.sign_set(revoke("genuine-jti-0123456789"), key(0))
    fake_issuer.push(genuine)
    refusal_time(photos, genuine_target, time.monotonic())
    fake_issuer.push(genuine)  # replayed
    deadline = time.monotonic() + 5
    while events(photos)["replayed"] < 1:
        assert time.monotonic() < deadline, events(photos)
        time.sleep(0.02)
    state = events(photos)
    assert (state["refused"], state["applied"], state["replayed"]) == (4, 1, 1)
    accepted(photos, target)  # nothing forged took effect
    log = photos.logs()
    assert "security event refused" in log
    for data in [*forged, genuine]:
        assert data.split(".")[2] not in log  # no token or signature in the log
