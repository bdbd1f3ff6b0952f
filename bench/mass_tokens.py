"""Many distinct valid access tokens, fast, and a lean HTTP client to send each one once.

For issue 7, scenario 6 (resource service memory after 1,000,000 distinct valid tokens). Minting a
million tokens through the issuer would take longer than the rest of the benchmark together, so the
bench plays issuer itself: its own RSA-2048 key, published as a JWKS by a tiny local server that the
resource service is pointed at (RESOURCE_JWKS_URL, RESOURCE_ISSUER), and tokens shaped exactly like
Keyhouse's (RFC 9068 header and claims). Signing runs in one process per core.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(i: int) -> str:
    return _b64(i.to_bytes((i.bit_length() + 7) // 8, "big"))


class BenchIssuerKey:
    """An RSA-2048 key with its public JWK; kid = RFC 7638 thumbprint (as Keyhouse does)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pn = self.key.public_key().public_numbers()
        members = {"e": _int_b64(pn.e), "kty": "RSA", "n": _int_b64(pn.n)}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        self.kid = _b64(hashlib.sha256(canonical).digest())
        self.jwks = {"keys": [{**members, "use": "sig", "alg": "RS256", "kid": self.kid}]}

    def pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class StaticJwksServer:
    """Serves one JWKS document on 127.0.0.1:port (any path), counting requests."""

    def __init__(self, jwks: dict[str, Any], port: int) -> None:
        body = json.dumps(jwks).encode()
        self.port = port
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def __enter__(self) -> StaticJwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _mint_chunk(job: tuple[bytes, str, str, str, str, int, int]) -> list[bytes]:
    pem, kid, issuer, audience, scope, start, count = job
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    header = _b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": kid}).encode())
    now = int(time.time())
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    out: list[bytes] = []
    prefix = secrets.token_hex(4)
    for i in range(start, start + count):
        claims = {
            "iss": issuer,
            "sub": f"client:bench-{i % 1000}",
            "aud": audience,
            "exp": now + 7200,
            "iat": now,
            "nbf": now,
            "jti": f"{prefix}{i:010d}",
            "client_id": f"bench-{i % 1000}",
            "scope": scope,
        }
        signing_input = (
            header + "." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        ).encode()
        out.append(signing_input + b"." + _b64(key.sign(signing_input, pkcs1, sha256)).encode())
    return out


def mint_tokens(
    key: BenchIssuerKey,
    n: int,
    issuer: str,
    audience: str,
    scope: str,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[bytes]:
    """n distinct tokens signed by key, using `processes` worker processes (default: all CPUs)."""
    processes = processes or len(os.sched_getaffinity(0))
    chunk = 5_000
    jobs = [
        (key.pem(), key.kid, issuer, audience, scope, start, min(chunk, n - start))
        for start in range(0, n, chunk)
    ]
    tokens: list[bytes] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        for part in pool.imap(_mint_chunk, jobs):
            tokens.extend(part)
            if progress:
                progress(len(tokens))
    return tokens


async def _connection_loop(
    host: str,
    port: int,
    path: str,
    tokens: list[bytes],
    cursor: list[int],
    statuses: dict[int, int],
    after_each: Callable[[int], None],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer ".encode()
    try:
        while cursor[0] < len(tokens):
            i = cursor[0]
            cursor[0] += 1
            writer.write(head + tokens[i] + b"\r\n\r\n")
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection")
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            after_each(cursor[0])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def send_each_once(
    host: str,
    port: int,
    path: str,
    tokens: list[bytes],
    connections: int = 16,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int], None] | None = None,
) -> tuple[dict[int, int], float]:
    """GET path once per token over keep-alive connections; returns (status counts, seconds)."""
    cursor = [0]
    statuses: dict[int, int] = {}
    next_mark = [checkpoint_every or len(tokens) + 1]

    def after_each(done: int) -> None:
        if on_checkpoint and done >= next_mark[0]:
            next_mark[0] += checkpoint_every
            on_checkpoint(done)

    async def main() -> None:
        await asyncio.gather(
            *(
                _connection_loop(host, port, path, tokens, cursor, statuses, after_each)
                for _ in range(connections)
            )
        )

    start = time.perf_counter()
    asyncio.run(main())
    return statuses, time.perf_counter() - start


def _vm_rss(pid: int) -> int:
    """VmRSS of one process in bytes; OSError when /proc has no such process, ValueError when
    it has no VmRSS (a zombie)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"/proc/{pid}/status has no VmRSS line (the process has exited)")


def rss_bytes(pid: int) -> int:
    """Resident set size of pid plus its children (uvicorn workers), from /proc.

    Raises (OSError, ValueError) when pid's own RSS cannot be read: an unreadable RSS is no
    measurement, never 0. A child that exits meanwhile is left out."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    total = _vm_rss(pid)
    for child in children:
        with contextlib.suppress(OSError, ValueError):
            total += _vm_rss(child)
    return total
