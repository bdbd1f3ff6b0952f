"""A server in its own process: start it, wait until it answers, keep its log, stop it.

The one process harness of the repository: the benchmark runs its issuers, resource services,
PyJWT baseline and node-oidc-provider peer with it, and the end-to-end tests
(tests/support/processes.py builds their stacks on it) their issuers and resource services.

The process runs in a session of its own, so that ``stop`` reaches a multi-worker server's
workers too: it sends SIGINT to the whole group, as Ctrl-C in a terminal does, then SIGKILL to
whatever is left.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

GRACE_SECONDS = 15.0  # how long ``stop`` waits after SIGINT before SIGKILL


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle, certificate and hostname checks), built
    once per process: httpx builds a new one for every client, ~55 ms of CPU each, and the test
    suite starts some hundreds of servers through this harness."""
    return httpx.create_ssl_context()


class ServerError(RuntimeError):
    """A server did not start: its port was taken, it exited early, or it never answered."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class Process(Protocol):
    """What the harness needs of a started process (:class:`subprocess.Popen` has it)."""

    pid: int
    returncode: int | Any

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


# Starts ``args`` with exactly ``env``, in ``cwd``, stdout and stderr appended to ``log``, stdin
# empty, in a session of its own.
Launch = Callable[[Sequence[str], Mapping[str, str], Path, Path], Process]


def popen(args: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> Process:
    """The default :data:`Launch`: a plain subprocess."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


class Server:
    """One server process listening on 127.0.0.1:``port``.

    ``args`` is the whole command line, ``env`` the whole environment. Its output (stdout and
    stderr) is appended to ``log``; it runs in ``cwd``, by default the directory of its log (its
    data directory). It counts as ready once ``GET ready_path`` answers below 500 (``verify`` is
    httpx's, for a TLS server; True: :func:`default_tls`). ``launch`` starts the process
    (default :func:`popen`; the tests start theirs from a fork server,
    tests/support/forkserver.py)."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        port: int,
        log: Path,
        *,
        scheme: str = "http",
        verify: Any = True,
        ready_path: str = "/healthz",
        cwd: Path | None = None,
        name: str | None = None,
        launch: Launch = popen,
    ) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.port = port
        self.log = log
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.ready_url = self.url + ready_path
        self.verify = verify
        self.cwd = cwd if cwd is not None else log.parent
        self.name = name or log.stem
        self.launch = launch
        self.proc: Process | None = None

    def start(self, *, timeout: float = 30.0) -> Server:
        """Starts the process and returns once it answers; raises ServerError otherwise (with the
        end of its log), after stopping it."""
        if port_in_use(self.port):
            raise ServerError(f"{self.name}: port {self.port} is already in use")
        self.proc = self.launch(self.args, self.env, self.cwd, self.log)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        # One client for the whole wait (it polls every 50 ms), on the process's one default TLS
        # context unless the server asked for its own.
        verify = default_tls() if self.verify is True else self.verify
        with httpx.Client(timeout=1.0, verify=verify) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(
                        f"{self.name} exited with {self.proc.returncode} before {self.ready_url}"
                        f" answered:\n{self.log_tail()}"
                    )
                try:
                    if http.get(self.ready_url).status_code < 500:
                        return self
                except httpx.HTTPError as exc:
                    last = exc
                time.sleep(0.05)
        self.stop(kill=True)
        raise ServerError(
            f"{self.name}: {self.ready_url} did not answer within {timeout:g}s ({last!r}):\n"
            + self.log_tail()
        )

    def stop(self, *, kill: bool = False) -> int | None:
        """SIGINT (SIGKILL with ``kill``) to the process group, SIGKILL after GRACE_SECONDS;
        returns the server's exit status (None when it never started)."""
        if self.proc is None:
            return None
        group = self.proc.pid  # start_new_session: the group id is the server's pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL if kill else signal.SIGINT)
            try:
                self.proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers of a multi-worker server may outlive their parent briefly.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        return self.proc.returncode

    def logs(self) -> str:
        """Everything the server has written so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        tail = self.logs().splitlines()[-lines:]
        return "\n".join("    " + line for line in tail) if tail else "    (empty log)"

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
