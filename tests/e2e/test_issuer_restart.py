"""Real processes: the issuer SIGKILLed and restarted while photos serves live traffic."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


def _health(url: str) -> dict[str, object]:
    return dict(web.get(url + "/healthz", timeout=5).json()["jwks"])


def test_issuer_sigkill_and_restart_under_traffic_has_zero_failures(stack: Stack) -> None:
    issuer = stack.issuer().start()
    photos = stack.resource(
        "photos",
        RESOURCE_JWKS_POLL_INTERVAL="0.5",
        RESOURCE_JWKS_MIN_TTL="1",
        RESOURCE_JWKS_RETRY_BACKOFF="0.1",
        RESOURCE_JWKS_MAX_RETRY_BACKOFF="0.5",
        RESOURCE_TOKEN_CACHE_SIZE="0",  # every request goes through the keys, not the cache
    ).start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    tokens = [stack.token(client)["access_token"] for _ in range(3)]
    for token in tokens:
        assert (
            web.get(
                photos.url + "/photos", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )

    stop = threading.Event()
    statuses: list[int] = []
    failures: list[str] = []

    def traffic() -> None:
        with web.Client(timeout=10) as http:
            i = 0
            while not stop.is_set():
                token = tokens[i % len(tokens)]
                i += 1
                try:
                    r = http.get(
                        photos.url + "/photos", headers={"Authorization": f"Bearer {token}"}
                    )
                    statuses.append(r.status_code)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        for _ in range(2):
            before = _health(photos.url)["fetches"]
            issuer.stop(kill=True)  # SIGKILL: no graceful shutdown
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # photos notices: its polls now fail
                fetches = dict(_health(photos.url)["fetches"])  # type: ignore[arg-type]
                if fetches.get("error", 0) > dict(before).get("error", 0):  # type: ignore[arg-type]
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("photos never polled the dead issuer")
            issuer.start()  # same port, same database
            ok_before = dict(_health(photos.url)["fetches"])  # type: ignore[arg-type]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # and recovers once it is back
                now = dict(_health(photos.url)["fetches"])  # type: ignore[arg-type]
                if now.get("not_modified", 0) + now.get("ok", 0) > ok_before.get(
                    "not_modified", 0
                ) + ok_before.get("ok", 0):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("photos never fetched from the restarted issuer")
    finally:
        stop.set()
        worker.join(timeout=15)
    assert failures == []
    assert len(statuses) > 50
    # A token issued after the restart is signed by the same persisted key and verifies too.
    fresh = stack.token(client)["access_token"]
    assert (
        web.get(photos.url + "/photos", headers={"Authorization": f"Bearer {fresh}"}).status_code
        == 200
    )
