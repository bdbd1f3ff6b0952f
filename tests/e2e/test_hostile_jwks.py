"""A real resource-service process against a hostile or broken JWKS host (issue 13.2-13.4).

The "issuer" here is :class:`~tests.support.jwks_fakes.JWKSServer`, a small HTTP server on
127.0.0.1 whose answers the test swaps while the service runs: an empty key set, a set with no
usable key, a redirect to a path that publishes another key, weak or malformed RSA keys.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness.processes import Server
from shared.clock import FakeClock
from shared.keys import SigningKey
from tests.support import web
from tests.support.jwks_fakes import (
    ISSUER,
    JWKSServer,
    json_answer,
    key,
    redirect_answer,
    token,
)
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

FAST = {
    "RESOURCE_ISSUER": ISSUER,
    "RESOURCE_JWKS_POLL_INTERVAL": "1",
    "RESOURCE_JWKS_MIN_TTL": "1",
    "RESOURCE_JWKS_RETRY_BACKOFF": "0.5",
    "RESOURCE_JWKS_MAX_RETRY_BACKOFF": "1",
    "RESOURCE_JWKS_MAX_FETCHES_PER_MINUTE": "600",
}


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer().start()
    try:
        yield server
    finally:
        server.stop()


@functools.cache
def _weak_key() -> SigningKey:
    """An RSA key with the public exponent 3, signing like any other key."""
    private = rsa.generate_private_key(public_exponent=3, key_size=2048)
    return SigningKey(kid="weak-e3", private_key=private)


def _leading_zero(jwk: dict[str, str]) -> dict[str, str]:
    raw = base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))
    n = base64.urlsafe_b64encode(b"\x00" + raw).rstrip(b"=").decode()
    return {**jwk, "kid": "n-leading-zero", "n": n}


def _weak_jwk() -> dict[str, str]:
    numbers = _weak_key().public_key.public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": _weak_key().kid,
        "n": base64.urlsafe_b64encode(n).rstrip(b"=").decode(),
        "e": "Aw",
    }


def _token(signing: SigningKey, *, kid: str | None = None) -> str:
    if kid is not None:
        signing = SigningKey(kid=kid, private_key=signing.private_key)
    return token(signing, FakeClock(time.time()))


def _whoami(service: Server, bearer: str) -> int:
    response = web.get(
        service.url + "/whoami", headers={"Authorization": f"Bearer {bearer}"}, timeout=10
    )
    return response.status_code


def _jwks_state(service: Server) -> dict[str, Any]:
    state: dict[str, Any] = web.get(service.url + "/healthz", timeout=10).json()["jwks"]
    return state


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Polls ``condition`` (a bounded wait for the service's background poll, not a timing
    assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _failures(service: Server, reason: str) -> float:
    text = web.get(service.url + "/metrics", timeout=10).text
    match = re.search(
        r'^keyhouse_jwks_fetch_failures_total\{reason="' + reason + r'"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def _start(stack: Stack, **env: str) -> Server:
    return stack.resource("photos", **{**FAST, **env}).start()


@pytest.mark.parametrize(
    "broken",
    [
        {"keys": []},
        {"keys": [_weak_jwk(), {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}]},
    ],
    ids=["empty", "no-usable-key"],
)
def test_a_key_set_without_a_usable_key_keeps_the_good_keys(
    stack: Stack, jwks_server: JWKSServer, broken: dict[str, Any]
) -> None:
    """Issue 13.2 (and 13.4 at the start): weak and malformed keys are skipped, and a set with
    no usable key is a failed refresh: the last good keys keep verifying."""
    good = key(0)
    jwks_server.set(
        "/jwks.json",
        json_answer({"keys": [good.public_jwk(), _weak_jwk(), _leading_zero(key(1).public_jwk())]}),
    )
    photos = _start(stack, RESOURCE_JWKS_URL=jwks_server.url + "/jwks.json")
    assert _whoami(photos, _token(good)) == 200
    assert _whoami(photos, _token(_weak_key())) == 401  # e = 3: skipped
    assert _whoami(photos, _token(key(1), kid="n-leading-zero")) == 401  # n not minimal
    assert _jwks_state(photos)["keys"] == [good.kid]
    log = photos.logs()
    assert "JWKS key skipped: key 'weak-e3': public exponent must be 65537" in log
    assert "key 'n-leading-zero': 'n' is not the minimal encoding" in log

    jwks_server.set("/jwks.json", json_answer(broken))
    served = jwks_server.count("/jwks.json")
    # Fetches never overlap: once the second has arrived, the first answer has been handled.
    _wait_until(
        lambda: jwks_server.count("/jwks.json") >= served + 2,
        "two refreshes answered by the broken set",
    )
    state = _jwks_state(photos)
    assert state["keys"] == [good.kid]
    assert state["usable"] is True
    assert state["last_fetch"]["result"] == "error"
    assert "no usable key" in state["last_fetch"]["detail"]
    assert _whoami(photos, _token(good)) == 200  # a fresh token: verified, not from the cache
    assert _failures(photos, "no_usable_keys") >= 1
    assert "JWKS fetch failed (no_usable_keys): JWKS has no usable key" in photos.logs()


def test_a_redirect_from_the_jwks_endpoint_is_not_followed(
    stack: Stack, jwks_server: JWKSServer
) -> None:
    """Issue 13.3: a 302 to another path that publishes another key is a failed fetch."""
    good, other = key(0), key(2)
    jwks_server.set("/jwks.json", json_answer({"keys": [good.public_jwk()]}))
    jwks_server.set("/other.json", json_answer({"keys": [other.public_jwk()]}))
    photos = _start(stack, RESOURCE_JWKS_URL=jwks_server.url + "/jwks.json")
    assert _whoami(photos, _token(good)) == 200

    jwks_server.set("/jwks.json", redirect_answer("/other.json"))
    served = jwks_server.count("/jwks.json")
    # Fetches never overlap: once the second has arrived, the first answer has been handled.
    _wait_until(
        lambda: jwks_server.count("/jwks.json") >= served + 2,
        "two refreshes answered by the redirect",
    )
    assert _jwks_state(photos)["last_fetch"]["result"] == "error"
    assert _whoami(photos, _token(other)) == 401  # its unknown kid fetches again: refused
    assert _whoami(photos, _token(good)) == 200
    assert jwks_server.count("/other.json") == 0
    assert _jwks_state(photos)["keys"] == [good.kid]
    assert _failures(photos, "redirect") >= 2
    assert "JWKS endpoint answered 302 redirecting to /other.json" in photos.logs()


def test_a_redirect_from_the_metadata_endpoint_is_not_followed(
    stack: Stack, jwks_server: JWKSServer
) -> None:
    """Issue 13.3, discovery: the metadata redirects to a document naming another JWKS."""
    evil = key(2)
    jwks_server.set(
        "/.well-known/oauth-authorization-server", redirect_answer("/evil-metadata", 307)
    )
    jwks_server.set(
        "/evil-metadata",
        json_answer({"issuer": ISSUER, "jwks_uri": jwks_server.url + "/evil.json"}),
    )
    jwks_server.set("/evil.json", json_answer({"keys": [evil.public_jwk()]}))
    photos = _start(stack, RESOURCE_ISSUER_URL=jwks_server.url)
    assert _whoami(photos, _token(evil)) == 503  # no keys: fails closed
    state = _jwks_state(photos)
    assert state["usable"] is False
    assert "redirecting to /evil-metadata" in state["last_fetch"]["detail"]
    assert jwks_server.count("/evil-metadata") == 0
    assert jwks_server.count("/evil.json") == 0
    assert _failures(photos, "redirect") >= 1
    assert "issuer metadata answered 307 redirecting to /evil-metadata" in photos.logs()
