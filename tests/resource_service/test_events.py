"""The resource service and pushed revocation, in process: settings (RESOURCE_EVENTS,
RESOURCE_EVENTS_URL's derivation and URL rules, RESOURCE_DENY_LIST_SIZE), the subscription run
by the lifespan against a fake issuer's event stream, a revoked token refused at /whoami, a
forged event changing nothing, /healthz's "events", the metrics, readiness unaffected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from resource_service.app import create_app
from resource_service.settings import ResourceSettings
from shared import security_events as se
from shared.clock import FakeClock
from shared.errors import ConfigurationError
from tests.support.jwks_fakes import ISSUER, JWKS_URL, FakeIssuer, key, token

ENV = {"RESOURCE_NAME": "photos", "RESOURCE_ISSUER": ISSUER}


def settings(**env: str) -> ResourceSettings:
    return ResourceSettings.from_env({**ENV, **env})


# -- settings ---------------------------------------------------------------------------------


def test_events_are_on_by_default_from_the_jwks_urls_origin() -> None:
    s = settings(RESOURCE_JWKS_URL="https://keys.example:8443/oauth/jwks.json")
    assert s.events
    assert s.events_url == "https://keys.example:8443/events"
    assert s.deny_list_size == 100_000


def test_without_a_jwks_url_the_issuer_url_is_the_base() -> None:
    assert settings().events_url == ISSUER + "/events"
    fetched_at = settings(RESOURCE_ISSUER_URL="https://internal.example/tenant/")
    assert fetched_at.events_url == "https://internal.example/tenant/events"


def test_an_explicit_url_wins_and_follows_the_url_rules() -> None:
    assert settings(RESOURCE_EVENTS_URL="https://other.example/e").events_url == (
        "https://other.example/e"
    )
    with pytest.raises(ConfigurationError, match="RESOURCE_EVENTS_URL must use https"):
        settings(RESOURCE_EVENTS_URL="http://issuer:8000/events")
    plain = "http://issuer:8000/events"
    assert settings(RESOURCE_EVENTS_URL=plain, RESOURCE_JWKS_ALLOW_HTTP="1").events_url == plain
    assert settings(RESOURCE_EVENTS_URL="http://127.0.0.1:8000/events").events_url
    with pytest.raises(ConfigurationError, match="absolute"):
        settings(RESOURCE_EVENTS_URL="/events")
    with pytest.raises(ConfigurationError, match="credentials"):
        settings(RESOURCE_EVENTS_URL="https://u:p@issuer.example/events")


def test_events_can_be_switched_off() -> None:
    s = settings(RESOURCE_EVENTS="0")
    assert not s.events
    assert s.events_url == ""
    with pytest.raises(ConfigurationError, match="RESOURCE_EVENTS must be true or false"):
        settings(RESOURCE_EVENTS="maybe")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RESOURCE_DENY_LIST_SIZE", "0"),
        ("RESOURCE_DENY_LIST_SIZE", "lots"),
        ("RESOURCE_EVENTS_IDLE_TIMEOUT", "0"),
        ("RESOURCE_EVENTS_RETRY_BACKOFF", "nan"),
        ("RESOURCE_EVENTS_MAX_RETRY_BACKOFF", "inf"),
    ],
)
def test_bad_numbers_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        settings(**{name: value})


# -- the service ------------------------------------------------------------------------------


class EventIssuer(FakeIssuer):
    """The fake issuer's JWKS, plus ``GET /events``: a stream of the SETs put in ``queue``."""

    def __init__(self) -> None:
        super().__init__()
        self.publish(key(0))
        self.queue: list[str] = []
        self.status = 200
        self.events_status = 200
        self.extra = self._events

    def _events(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path != "/events":
            return None
        if self.events_status != 200:
            return httpx.Response(self.events_status, content=b"{}")

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            while True:
                while sent < len(self.queue):
                    sent += 1
                    yield f"id: {sent}\nevent: set\ndata: {self.queue[sent - 1]}\n\n".encode()
                await asyncio.sleep(0.01)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, EventIssuer, FakeClock]]:
    yield from _world(tmp_path)


def _world(
    tmp_path: Path, issuer: EventIssuer | None = None, **env: str
) -> Iterator[tuple[TestClient, EventIssuer, FakeClock]]:
    clock = FakeClock(time.time())
    issuer = issuer or EventIssuer()
    s = settings(
        RESOURCE_JWKS_URL=JWKS_URL,
        RESOURCE_DATABASE_PATH=str(tmp_path / "photos.db"),
        **env,
    )
    app = create_app(s, transport=httpx.MockTransport(issuer.handler), clock=clock)
    with TestClient(app) as client:
        yield client, issuer, clock


def whoami(client: TestClient, tok: str) -> httpx.Response:
    return client.get("/whoami", headers={"Authorization": f"Bearer {tok}"})


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def events_state(client: TestClient) -> dict[str, Any]:
    state: dict[str, Any] = client.get("/healthz").json()["events"]
    return state


def test_a_pushed_revocation_refuses_the_token_and_only_it(
    world: tuple[TestClient, EventIssuer, FakeClock],
) -> None:
    client, issuer, clock = world
    revoked = token(key(0), clock, jti="revoked-jti-0123456789")
    kept = token(key(0), clock)
    assert whoami(client, revoked).status_code == 200  # verified and cached
    wait_for(lambda: events_state(client)["state"] == "connected")
    now = int(clock())
    claims = se.token_revoked(
        issuer=ISSUER, now=now, token_jti="revoked-jti-0123456789", exp=now + 900
    )
    issuer.queue.append(se.sign_set(claims, key(0)))
    wait_for(lambda: whoami(client, revoked).status_code == 401)
    refused = whoami(client, revoked)
    assert refused.json() == {
        "error": "invalid_token",
        "error_description": "the token has been revoked",
    }
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert whoami(client, kept).status_code == 200
    state = events_state(client)
    assert state["applied"] == 1
    assert state["last_event_id"] == "1"
    assert state["url"] == "https://issuer.example/events"
    metrics = client.get("/metrics").text
    assert 'keyhouse_events_total{outcome="applied"} 1.0' in metrics
    assert 'keyhouse_deny_list_entries{claim="jti"} 1.0' in metrics
    assert 'keyhouse_deny_list_refusals_total{claim="jti"} 2.0' in metrics
    assert 'keyhouse_events_subscription{state="connected"} 1.0' in metrics
    assert "keyhouse_deny_list_capacity 100000.0" in metrics


def test_a_forged_event_changes_nothing(
    world: tuple[TestClient, EventIssuer, FakeClock],
) -> None:
    client, issuer, clock = world
    tok = token(key(0), clock, jti="target-jti-0123456789")
    now = int(clock())
    claims = se.token_revoked(
        issuer=ISSUER, now=now, token_jti="target-jti-0123456789", exp=now + 900
    )
    issuer.queue.append(se.sign_set(claims, key(1)))  # a key the issuer does not publish
    issuer.queue.append(tok)  # an access token sent as an event
    issuer.queue.append(se.sign_set({**claims, "iss": "https://evil.example"}, key(0)))
    wait_for(lambda: events_state(client)["refused"] == 3)
    assert whoami(client, tok).status_code == 200
    metrics = client.get("/metrics").text
    assert 'keyhouse_events_total{outcome="refused"} 3.0' in metrics
    assert 'keyhouse_deny_list_entries{claim="jti"} 0.0' in metrics


def test_the_service_stays_ready_while_the_subscription_is_down(tmp_path: Path) -> None:
    issuer = EventIssuer()
    issuer.events_status = 404
    for client, _, clock in _world(tmp_path, issuer):
        wait_for(lambda: events_state(client)["last_error"] is not None)
        assert events_state(client)["state"] in ("down", "connecting")
        assert "answered 404" in events_state(client)["last_error"]
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"
        assert whoami(client, token(key(0), clock)).status_code == 200


def test_switched_off_there_is_no_subscription(tmp_path: Path) -> None:
    issuer = EventIssuer()
    for client, _, _ in _world(tmp_path, issuer, RESOURCE_EVENTS="0"):
        assert events_state(client) == {"state": "disabled"}
        metrics = client.get("/metrics").text
        assert 'keyhouse_events_subscription{state="disabled"} 1.0' in metrics
    assert all(r.url.path != "/events" for r in issuer.requests)
