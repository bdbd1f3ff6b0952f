"""Server processes for the tests without an interpreter start each: a fork server.

Every end-to-end stack starts issuers, resource services and web apps, some hundreds of them in
a run of the suite; each spent a second or more of CPU importing Python, Starlette, SQLAlchemy,
Alembic and the service before it served a request. A fork server (one per pytest worker,
started on first use) imports all of that once; each server process is then a ``fork()`` of it
that runs the console script's own ``main`` (``issuer serve ...``): a real process with its own
pid, session, environment, working directory, sockets and log, stopped by the same signals,
serving from the same uvicorn. What it skips is the import and nothing else.

Only the three console scripts with one worker come from here (``serve --workers N>1`` has
uvicorn spawn fresh interpreters, so it starts as a plain subprocess, as does anything else).

The protocol is one JSON line per request on the fork server's stdin and one per answer on its
stdout: ``spawn`` (answers the pid) and ``poll`` (answers the exit status, ``None`` while it
runs, negative for a signal as :class:`subprocess.Popen` says). The fork server reaps its
children; when the test worker goes away (end of file on stdin) it kills the ones left.

Run as ``python -m tests.support.forkserver`` (by :func:`launch`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from bench.harness.processes import Process, popen

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("issuer", "resource-service", "webapp")


# -- the test side --------------------------------------------------------------------------


class ForkedProcess:
    """A child of the fork server, with the part of :class:`subprocess.Popen`'s interface the
    process harness uses (``pid``, ``returncode``, ``poll``, ``wait``, ``kill``)."""

    def __init__(self, server: ForkServer, pid: int, args: Sequence[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.poll(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The test worker's handle on its fork server (requests are serialised by a lock)."""

    def __init__(self) -> None:
        # Its own environment reaches no server: each child gets exactly the one it is given.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            start_new_session=True,  # a Ctrl-C meant for pytest is not the servers'
        )
        self._lock = threading.Lock()
        if self._request({"op": "hello"}) != {"ready": True}:
            raise RuntimeError("the fork server did not start")

    def _request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the fork server: {answer['error']}")
        return answer

    def spawn(
        self, args: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path
    ) -> ForkedProcess:
        message = {"op": "spawn", "args": list(args), "env": dict(env), "cwd": str(cwd)}
        message["log"] = str(log.resolve())
        pid = int(self._request(message)["pid"])
        return ForkedProcess(self, pid, args)

    def poll(self, pid: int) -> int | None:
        status = self._request({"op": "poll", "pid": pid})["status"]
        return None if status is None else int(status)

    def close(self) -> None:
        """End the fork server (it kills its children still running, as at the worker's end)."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


_server: ForkServer | None = None
_server_lock = threading.Lock()


def forkable(args: Sequence[str]) -> bool:
    """Whether ``args`` is a command the fork server runs: one of the console scripts of this
    environment's ``bin`` with one worker, on Linux."""
    if not sys.platform.startswith("linux") or not args:
        return False
    program = Path(args[0])
    if program.name not in PROGRAMS or program.parent != Path(sys.executable).parent:
        return False
    if "--workers" in args:
        workers = args[list(args).index("--workers") + 1 :][:1]
        return workers == ["1"]
    return True


def launch(args: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> Process:
    """Start ``args`` as :class:`bench.harness.processes.Server` would (its ``launch``): from
    the fork server when :func:`forkable`, else as a plain subprocess
    (KEYHOUSE_TEST_FORKSERVER=0: always)."""
    if not forkable(args) or os.environ.get("KEYHOUSE_TEST_FORKSERVER") == "0":
        return popen(args, env, cwd, log)
    global _server
    with _server_lock:
        if _server is None:
            _server = ForkServer()
        server = _server
    return server.spawn(args, env, cwd, log)


# -- the fork server ------------------------------------------------------------------------


def _mains() -> dict[str, Callable[[list[str]], int]]:
    """The console scripts' functions, imported with everything their servers import."""
    import alembic.command  # noqa: F401 - migrations at start-up
    import uvicorn  # noqa: F401

    import issuer.asgi
    import issuer.cli
    import issuer.migrations
    import resource_service.asgi
    import resource_service.cli
    import webapp.asgi
    import webapp.cli

    return {
        "issuer": issuer.cli.main,
        "resource-service": resource_service.cli.main,
        "webapp": webapp.cli.main,
    }


def _child(request: Mapping[str, Any], main: Callable[[list[str]], int]) -> None:
    """In the forked child: become what ``subprocess.Popen(start_new_session=True)`` with the
    log as stdout and stderr would have started, run ``main`` and exit. Never returns."""
    code = 1
    try:
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # The streams a fresh interpreter makes for a file: stdout block-buffered, stderr
        # line-buffered (unbuffered both with PYTHONUNBUFFERED).
        unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(1, "w", closefd=False)), write_through=unbuffered
        )
        sys.stderr = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
            errors="backslashreplace",
            line_buffering=True,
            write_through=unbuffered,
        )
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["args"])
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it
        try:
            code = main(list(request["args"][1:]))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            traceback.print_exc()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)  # exit by the signal, as the interpreter does
        except BaseException:
            traceback.print_exc()
            code = 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The fork server's loop (see the module doc)."""
    mains = _mains()
    children: dict[int, int | None] = {}

    def answer(message: Mapping[str, Any]) -> None:
        answers.write(json.dumps(message).encode() + b"\n")
        answers.flush()

    try:
        for line in requests:
            request = json.loads(line)
            try:
                if request["op"] == "hello":
                    answer({"ready": True})
                elif request["op"] == "spawn":
                    main = mains[Path(request["args"][0]).name]
                    pid = os.fork()
                    if pid == 0:
                        _child(request, main)
                    children[pid] = None
                    answer({"pid": pid})
                elif request["op"] == "poll":
                    pid = int(request["pid"])
                    if children.get(pid) is None:
                        done, status = os.waitpid(pid, os.WNOHANG)
                        if done == pid:
                            children[pid] = os.waitstatus_to_exitcode(status)
                    answer({"status": children[pid]})
                else:
                    answer({"error": f"unknown request {request['op']!r}"})
            except Exception as exc:  # an answer, not a dead fork server
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for pid, status in children.items():
            if status is None:
                for kill in (os.killpg, os.kill):  # its group; itself, should it have left it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
