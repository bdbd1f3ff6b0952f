"""A resource service's readiness follows its keys, with real processes: started while the issuer
is unreachable it is alive (``/healthz`` 200) but not ready (``/readyz`` 503, saying why); once
the issuer answers and its keys are fetched, ready (200)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0


def test_resource_service_is_ready_once_it_holds_the_issuers_keys(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        # Nothing listens on the issuer's port yet; retries come at most a second apart.
        photos = stack.resource(
            "photos", RESOURCE_JWKS_RETRY_BACKOFF="0.2", RESOURCE_JWKS_MAX_RETRY_BACKOFF="1"
        ).start()
        for _ in range(2):  # probing does not make it ready
            response = web.get(photos.url + "/readyz", timeout=10)
            assert response.status_code == 503, response.text
            assert response.headers["cache-control"] == "no-store"
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["reason"].startswith("no usable verification keys: the last fetch failed")
        assert web.head(photos.url + "/readyz", timeout=10).status_code == 503
        assert web.get(photos.url + "/healthz", timeout=10).status_code == 200

        stack.issuer().start()
        deadline = time.monotonic() + DEADLINE_S
        while True:
            response = web.get(photos.url + "/readyz", timeout=10)
            if response.status_code == 200:
                break
            assert response.status_code == 503, response.text
            assert time.monotonic() < deadline, (
                f"not ready within {DEADLINE_S:g} s: {response.text}"
            )
            time.sleep(0.1)
        assert response.json() == {"status": "ready"}
        assert web.head(photos.url + "/readyz", timeout=10).status_code == 200
    finally:
        stack.stop_all()
