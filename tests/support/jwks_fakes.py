"""In-process fakes for the JWKS tier: keys, tokens, and an issuer behind httpx.MockTransport."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from shared.clock import FakeClock
from shared.jwks import encode_jwks, jwks_etag
from shared.jwks_client import JWKSClient
from shared.jwks_settings import JWKSClientSettings
from shared.keys import SigningKey, generate_signing_key
from shared.tokens import TokenSigner, TokenVerifier, access_token_claims
from tests.support.local_http import LocalServer

ISSUER = "https://issuer.example"
JWKS_URL = ISSUER + "/.well-known/jwks.json"
AUDIENCE = "photos"


@functools.cache
def key(n: int) -> SigningKey:
    """The n-th test key (generated once per session: RSA generation is slow)."""
    return generate_signing_key()


def token(signing: SigningKey, clock: FakeClock, *, ttl: int = 900, **overrides: Any) -> str:
    claims = access_token_claims(
        issuer=ISSUER,
        subject="client:abc",
        audience=AUDIENCE,
        client_id="abc",
        scopes=frozenset({"photos:read"}),
        now=clock(),
        ttl=ttl,
    )
    claims.update(overrides)
    return TokenSigner(signing).sign(claims)


@dataclass
class FakeIssuer:
    """Serves a JWKS with Cache-Control and ETag; every request is recorded."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    max_age: int | None = 300
    status: int = 200
    fail: bool = False
    gate: asyncio.Event | None = None  # when set, requests wait on it (a stalled issuer)
    requests: list[httpx.Request] = field(default_factory=list)
    extra: Callable[[httpx.Request], httpx.Response | None] | None = None

    def publish(self, *signing: SigningKey) -> None:
        self.keys = [k.public_jwk() for k in signing]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = encode_jwks({"keys": list(self.keys)})  # what was published when it arrived
        fail = self.fail
        if self.gate is not None:
            await self.gate.wait()
        if fail:
            raise httpx.ConnectError("issuer down", request=request)
        if self.extra is not None:
            answer = self.extra(request)
            if answer is not None:
                return answer
        etag = jwks_etag(body)
        headers = {"ETag": etag}
        if self.max_age is not None:
            headers["Cache-Control"] = f"public, max-age={self.max_age}"
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers=headers)
        return httpx.Response(self.status, content=body, headers=headers)

    @property
    def fetches(self) -> int:
        return len(self.requests)


def make_client(
    issuer: FakeIssuer, clock: FakeClock, **settings: Any
) -> tuple[JWKSClient, httpx.AsyncClient]:
    settings.setdefault("jwks_url", JWKS_URL)
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler))
    return JWKSClient(JWKSClientSettings(issuer=ISSUER, **settings), http, clock=clock), http


def verifier(clock: FakeClock, leeway: int = 30) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, clock=clock, leeway=leeway)


def jwks_document(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


@dataclass
class Answer:
    """What :class:`JWKSServer` answers on one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(document: Any, max_age: int = 1) -> Answer:
    return Answer(
        200,
        json.dumps(document).encode(),
        {"Content-Type": "application/json", "Cache-Control": f"public, max-age={max_age}"},
    )


def redirect_answer(location: str, status: int = 302) -> Answer:
    return Answer(status, b"", {"Location": location})


class JWKSServer:
    """A real HTTP server on 127.0.0.1 (a thread) standing in for an issuer's metadata and JWKS
    endpoints, for end-to-end tests of a resource-service process. ``answers`` maps a path to
    what it answers (swap entries while it runs); ``requests`` lists every path asked for."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append(path)
                    answer = server.answers.get(path, Answer(404, b"{}"))
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = LocalServer(Handler)
        self.url = self._server.url

    def start(self) -> JWKSServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def set(self, path: str, answer: Answer) -> None:
        with self._lock:
            self.answers[path] = answer

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)
