"""The fork server the tests start their servers from (tests/support/forkserver.py): what a
server forked from it gets is what a subprocess would have had."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from bench.harness.processes import Server, ServerError, popen
from tests.support import web
from tests.support.forkserver import ForkedProcess, ForkServer, forkable, launch
from tests.support.processes import BIN, base_env, free_port

pytestmark = pytest.mark.e2e

SECRET = "forkserver-test-secret-0123456789"


def _issuer(tmp_path: Path, *args: str, **env: str) -> Server:
    port = free_port()
    full_env = base_env(
        ISSUER_URL="http://issuer.forked.test",
        ISSUER_DATABASE_URL="sqlite:///relative/issuer.db",  # relative: to the server's cwd
        ISSUER_SECRET_KEY=SECRET,
    )
    full_env.update(env)
    (tmp_path / "data").mkdir(exist_ok=True)
    return Server(
        [str(BIN / "issuer"), "serve", "--port", str(port), *args],
        full_env,
        port,
        tmp_path / "issuer.log",
        cwd=tmp_path / "data",
        launch=launch,
    )


def test_which_commands_are_forked() -> None:
    assert forkable([str(BIN / "issuer"), "serve"])
    assert forkable([str(BIN / "resource-service"), "serve", "--workers", "1"])
    assert forkable([str(BIN / "webapp"), "serve"])
    assert not forkable([str(BIN / "issuer"), "serve", "--workers", "2"])  # uvicorn spawns
    assert not forkable(["/usr/bin/issuer", "serve"])  # another environment's
    assert not forkable([sys.executable, "-m", "issuer.cli", "serve"])
    assert not forkable([])


def test_a_forked_server_has_its_own_session_environment_directory_and_log(
    tmp_path: Path,
) -> None:
    server = _issuer(tmp_path, ISSUER_JWKS_MAX_AGE="77").start()
    try:
        assert isinstance(server.proc, ForkedProcess)
        pid = server.proc.pid
        assert pid != os.getpid()
        assert os.getsid(pid) == pid  # a session of its own, as start_new_session gives
        assert Path(f"/proc/{pid}/cwd").resolve() == (tmp_path / "data").resolve()
        assert (tmp_path / "data" / "relative" / "issuer.db").is_file()
        discovery = web.get(server.url + "/.well-known/openid-configuration", timeout=5)
        assert discovery.json()["issuer"] == "http://issuer.forked.test"
        jwks = web.get(server.url + "/.well-known/jwks.json", timeout=5)
        assert "max-age=77" in jwks.headers["cache-control"]
        assert server.proc.poll() is None
    finally:
        status = server.stop()
    assert status == 0  # SIGINT: uvicorn's graceful shutdown, as in a terminal
    assert "Uvicorn running on" in server.logs()
    assert "Finished server process" in server.logs()


def test_the_fork_servers_own_environment_reaches_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISSUER_JWKS_MAX_AGE", "61")
    fork_server = ForkServer()  # with ISSUER_JWKS_MAX_AGE=61 in its environment
    try:
        server = _issuer(tmp_path)  # given no ISSUER_JWKS_MAX_AGE: the default, 300
        server.launch = fork_server.spawn
        server.start()
        try:
            jwks = web.get(server.url + "/.well-known/jwks.json", timeout=5)
            assert "max-age=300" in jwks.headers["cache-control"]
        finally:
            assert server.stop() == 0
    finally:
        fork_server.close()


def test_a_killed_server_reports_the_signal(tmp_path: Path) -> None:
    server = _issuer(tmp_path).start()
    assert server.stop(kill=True) == -signal.SIGKILL


def test_a_server_that_refuses_to_start_exits_with_its_status_and_one_line(
    tmp_path: Path,
) -> None:
    server = _issuer(tmp_path, "--workers", "1", ISSUER_SECRET_KEY="short")
    with pytest.raises(ServerError, match="exited with 2"):
        server.start(timeout=20)
    assert isinstance(server.proc, ForkedProcess)
    log = server.logs()
    assert "Traceback" not in log
    assert "ISSUER_SECRET_KEY" in log


def test_the_same_server_as_a_plain_subprocess(tmp_path: Path) -> None:
    """The default launch, for comparison: the same answers and status (KEYHOUSE_TEST_FORKSERVER=0
    runs the whole suite this way)."""
    server = _issuer(tmp_path)
    server.launch = popen
    server.start()
    try:
        assert not isinstance(server.proc, ForkedProcess)
        discovery = web.get(server.url + "/.well-known/openid-configuration", timeout=5)
        assert discovery.json()["issuer"] == "http://issuer.forked.test"
    finally:
        assert server.stop() == 0
