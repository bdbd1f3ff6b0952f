"""Real processes for the end-to-end tier: the issuer and resource services on loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    url: str,
    *,
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
    verify: Any = True,
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last!r}")


class Server:
    """A uvicorn server in its own process; ``stop`` sends SIGINT like Ctrl-C does."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        port: int,
        log: Path,
        scheme: str = "http",
        verify: Any = True,
    ) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.port = port
        self.log = log
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.verify = verify
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 20.0) -> Server:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.env.get("KEYHOUSE_TEST_CWD"),
        )
        handle.close()
        wait_for(self.url + "/healthz", timeout=timeout, proc=self.proc, verify=self.verify)
        return self

    def stop(self, *, kill: bool = False) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISSUER_", "RESOURCE_"))}
    env.update(extra)
    return env


class Stack:
    """Builds issuer and resource-service processes that share one temporary directory.

    ``database_url`` (default: a SQLite file in ``root``) is the issuers' ISSUER_DATABASE_URL,
    e.g. a PostgreSQL database for replicas (see ``issuer_replica``)."""

    def __init__(self, root: Path, database_url: str | None = None) -> None:
        self.root = root
        self.issuer_port = free_port()
        self.issuer_url = f"http://127.0.0.1:{self.issuer_port}"
        self.database_url = database_url or f"sqlite:///{root}/issuer.db"
        self.issuer_env = base_env(
            ISSUER_URL=self.issuer_url,
            ISSUER_DATABASE_URL=self.database_url,
            ISSUER_SECRET_KEY="test-secret-key-0123456789abcdef",
            ISSUER_KEY_REFRESH_INTERVAL="0.2",
        )
        self.servers: list[Server] = []
        self._initialised = False

    def cli(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        # Only `issuer init` and `issuer serve` create the store: an operator runs init first.
        if not self._initialised and args[:1] not in (("init",), ("serve",), ("drill",)):
            self._initialised = True
            self.cli("init")
        result = subprocess.run(
            [str(BIN / "issuer"), *args],
            env={**self.issuer_env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"issuer {' '.join(args)} failed: {result.stderr}")
        return result

    def issuer(self, *args: str, **env: str) -> Server:
        """The issuer on ``issuer_port``; ``args`` are extra ``issuer serve`` flags."""
        server = Server(
            [str(BIN / "issuer"), "serve", "--port", str(self.issuer_port), *args],
            {**self.issuer_env, **env, "KEYHOUSE_TEST_CWD": str(self.root)},
            self.issuer_port,
            self.root / "issuer.log",
        )
        self.servers.append(server)
        return server

    def issuer_replica(self, label: str, **env: str) -> Server:
        """Another issuer process on the same database and configuration (same ``iss``,
        ISSUER_URL), listening on its own loopback port: ``server.url`` is where to reach it."""
        port = free_port()
        server = Server(
            [str(BIN / "issuer"), "serve", "--port", str(port)],
            {**self.issuer_env, **env, "KEYHOUSE_TEST_CWD": str(self.root)},
            port,
            self.root / f"issuer-{label}.log",
        )
        self.servers.append(server)
        return server

    def resource(self, name: str, *args: str, **env: str) -> Server:
        port = free_port()
        full_env = base_env(
            RESOURCE_ISSUER=self.issuer_url,
            RESOURCE_DATABASE_PATH=str(self.root / f"{name}.db"),
            KEYHOUSE_TEST_CWD=str(self.root),
        )
        full_env.update(env)
        server = Server(
            [str(BIN / "resource-service"), "serve", "--name", name, "--port", str(port), *args],
            full_env,
            port,
            self.root / f"{name}.log",
        )
        self.servers.append(server)
        return server

    def create_client(
        self,
        *,
        scope: str,
        audiences: Sequence[str],
        grants: Sequence[str] = ("client_credentials",),
    ) -> dict[str, Any]:
        args = ["clients", "create", "--name", "test", "--scope", scope, "--json"]
        for aud in audiences:
            args += ["--audience", aud]
        for grant in grants:
            args += ["--grant", grant]
        return json.loads(self.cli(*args).stdout)

    def create_user(self, username: str, password: str, scope: str) -> None:
        self.cli(
            "users", "create", username, "--password-stdin", "--scope", scope, input=password + "\n"
        )

    def token(
        self, client: Mapping[str, Any], *, at: str | None = None, **form: str
    ) -> dict[str, Any]:
        """POST /token to the issuer (or to the base URL ``at``, e.g. a replica's)."""
        form.setdefault("grant_type", "client_credentials")
        response = httpx.post(
            (at or self.issuer_url) + "/token",
            data=form,
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()
