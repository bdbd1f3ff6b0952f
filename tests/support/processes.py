"""Real processes for the end-to-end tier: the issuer and resource services on loopback ports.

Each server is a :class:`bench.harness.processes.Server`, the repository's one process harness
(the benchmark runs its servers with it too); this module only knows what a test stack needs:
free ports, a clean environment, the issuer's CLI, clients and tokens."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.harness.processes import Server
from issuer.accounts import AccountStore
from issuer.engines import make_engine
from issuer.refresh import RefreshTokenStore
from issuer.settings import IssuerSettings
from tests.support import web
from tests.support.cli import run_issuer
from tests.support.forkserver import launch

BIN = Path(sys.executable).parent


# Ports for the tests' servers: each pytest-xdist worker walks a range of its own, below the
# kernel's ephemeral ports. A port the kernel hands out for bind(0) is soon handed to another
# worker too (or taken by an outgoing connection): a test then reached the other worker's server.
_PORT_SPAN = 1500
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_PORT_BASE = 20000 + (int(_WORKER) % 8 if _WORKER.isdigit() else 0) * _PORT_SPAN
_next_port = itertools.count(random.randrange(_PORT_SPAN))


# The bench smokes' niceness: their load (wrk and the servers, flat out by design; their numbers
# are not judged) yields the cores to the timing-sensitive tests running beside them on the
# other workers (a drill's refusal within a second, a probe's round trip).
BENCH_SMOKE_NICENESS = 10


def lower_priority() -> None:
    """``preexec_fn`` for a bench smoke's process (its children inherit it)."""
    os.nice(BENCH_SMOKE_NICENESS)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, from this worker's range, not one it handed
    out lately (the range is walked in turn from a random start)."""
    for _ in range(_PORT_SPAN):
        port = _PORT_BASE + next(_next_port) % _PORT_SPAN
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_BASE}-{_PORT_BASE + _PORT_SPAN - 1}")


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
        # Only `issuer init` and `issuer serve` create the store: an operator runs init first,
        # unless an issuer of this stack has started (serve made it).
        if not self._initialised and args[:1] not in (("init",), ("serve",), ("drill",)):
            self._initialised = True
            serving = [s for s in self.servers if s.args[:2] == [str(BIN / "issuer"), "serve"]]
            if not any(s.proc is not None for s in serving):
                self.cli("init")
        full_env = {**self.issuer_env, **(env or {})}
        if args[:1] == ("drill",):  # a long-running client tool: its own process
            result = subprocess.run(
                [str(BIN / "issuer"), *args],
                env=full_env,
                input=input,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=self.root,
            )
        else:  # the command's own code without an interpreter start (tests/support/cli.py)
            result = run_issuer(args, env=full_env, cwd=self.root, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"issuer {' '.join(args)} failed: {result.stderr}")
        return result

    def issuer(self, *args: str, **env: str) -> Server:
        """The issuer on ``issuer_port``; ``args`` are extra ``issuer serve`` flags."""
        server = Server(
            [str(BIN / "issuer"), "serve", "--port", str(self.issuer_port), *args],
            {**self.issuer_env, **env},
            self.issuer_port,
            self.root / "issuer.log",
            launch=launch,
        )
        self.servers.append(server)
        return server

    def issuer_replica(self, label: str, **env: str) -> Server:
        """Another issuer process on the same database and configuration (same ``iss``,
        ISSUER_URL), listening on its own loopback port: ``server.url`` is where to reach it."""
        port = free_port()
        server = Server(
            [str(BIN / "issuer"), "serve", "--port", str(port)],
            {**self.issuer_env, **env},
            port,
            self.root / f"issuer-{label}.log",
            launch=launch,
        )
        self.servers.append(server)
        return server

    def resource(self, name: str, *args: str, **env: str) -> Server:
        port = free_port()
        full_env = base_env(
            RESOURCE_ISSUER=self.issuer_url,
            RESOURCE_DATABASE_PATH=str(self.root / f"{name}.db"),
        )
        full_env.update(env)
        server = Server(
            [str(BIN / "resource-service"), "serve", "--name", name, "--port", str(port), *args],
            full_env,
            port,
            self.root / f"{name}.log",
            launch=launch,
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
        return dict(json.loads(self.cli(*args).stdout))

    def create_user(self, username: str, password: str, scope: str) -> None:
        self.cli(
            "users", "create", username, "--password-stdin", "--scope", scope, input=password + "\n"
        )

    def sign_ins(
        self, client: Mapping[str, Any], username: str, count: int, *, audience: str, scope: str
    ) -> list[str]:
        """``count`` refresh tokens of ``username`` at ``client``, each starting a family of its
        own, stored as a password grant stores a sign-in's, but written to the database here:
        for tests about what happens to refresh tokens, where the logins' argon2 checks (~0.25 s
        of the issuer's CPU each, dozens per test) are not the subject."""
        engine = make_engine(self.database_url)
        try:
            user = AccountStore(engine).get_user(username)
            assert user is not None, username
            settings = IssuerSettings.from_env(self.issuer_env)  # the stack's lifetimes
            store = RefreshTokenStore(
                engine,
                ttl=settings.refresh_token_ttl,
                idle_ttl=settings.refresh_token_idle_ttl,
            )
            return [
                store.issue(
                    client_id=str(client["client_id"]),
                    user_id=user.user_id,
                    scopes=frozenset(scope.split()),
                    audience=audience,
                    now=time.time(),
                )
                for _ in range(count)
            ]
        finally:
            engine.dispose()

    def token(
        self, client: Mapping[str, Any], *, at: str | None = None, **form: str
    ) -> dict[str, Any]:
        """POST /token to the issuer (or to the base URL ``at``, e.g. a replica's)."""
        form.setdefault("grant_type", "client_credentials")
        response = web.post(
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
