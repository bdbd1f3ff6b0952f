"""``./scripts/up`` as a user runs it: the stack comes up, the printed walkthrough works as
printed, the web app it prints sends people to the issuer's sign-in page, a second start reuses
the data, a service that dies is restarted while the others keep serving, and Ctrl-C stops all
four processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import web
from tests.support.processes import base_env, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
READY = "--- keyhouse ready ---"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[str], list[str]]:
    env = base_env(
        KEYHOUSE_VENV=str(Path(sys.executable).parent.parent),
        KEYHOUSE_VAR=str(tmp_path / "var"),
        ISSUER_PORT=str(ports["issuer"]),
        PHOTOS_PORT=str(ports["photos"]),
        CONTACTS_PORT=str(ports["contacts"]),
        WEBAPP_PORT=str(ports["webapp"]),
        ISSUER_SECRET_KEY="scripts-up-test-secret-0123456789",
    )
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "up")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C's SIGINT as in a terminal: a shell started with SIGINT ignored (pytest run as
        # a background job of a non-interactive shell passes that on) cannot trap it.
        preexec_fn=_default_sigint,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip() == READY:
            return proc, lines
    proc.kill()
    raise AssertionError("scripts/up never became ready:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # no stack left running after a failed test
        proc.wait(timeout=30)
        raise


def _walkthrough(lines: list[str]) -> str:
    start = next(i for i, line in enumerate(lines) if line.startswith("Walkthrough"))
    return "\n".join(lines[start + 1 : lines.index(READY)])


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("issuer", "photos", "contacts", "webapp")}


def _check_webapp(lines: list[str], ports: dict[str, int], creds: dict[str, str]) -> None:
    """The web app line names its address and the demo user; its "Sign in" leads to the
    issuer's login page (its redirect URI, on the port it was moved to, is registered)."""
    webapp = f"http://127.0.0.1:{ports['webapp']}"
    said = "\n".join(lines)
    assert f"Web app: open {webapp} in a browser" in said
    assert f"username={creds['username']} password={creds['password']}" in said
    assert web.get(webapp + "/readyz", timeout=5).json() == {"status": "ready"}
    login = web.get(webapp + "/login", timeout=5)
    assert login.status_code == 303
    authorize = login.headers["location"]
    assert authorize.startswith(f"http://127.0.0.1:{ports['issuer']}/authorize?")
    assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{ports['webapp']}%2Fcallback" in authorize
    page = web.get(authorize, timeout=5)
    assert page.status_code == 200, page.text[:500]
    assert 'name="password"' in page.text


@dataclass
class Running:
    """One ``./scripts/up`` for the module: its process, ports, var directory and output (read
    on by a thread once it is ready)."""

    proc: subprocess.Popen[str]
    ports: dict[str, int]
    var: Path
    lines: list[str]
    restarted_issuer: int = 0


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Started once (a start is four cold services and the demo's set-up): the walkthrough and
    the restart look at it as it runs, the last test stops it with Ctrl-C and starts it again."""
    tmp = tmp_path_factory.mktemp("up")
    ports = _ports()
    proc, lines = _start(tmp, ports)
    out = proc.stdout
    assert out is not None
    threading.Thread(target=lambda: lines.extend(x.rstrip("\n") for x in out), daemon=True).start()
    try:
        yield Running(proc, ports, tmp / "var", lines)
    finally:
        if proc.poll() is None:
            _stop(proc)


def test_scripts_up_walkthrough_works_as_printed(running: Running) -> None:
    creds = json.loads((running.var / "demo-credentials.json").read_text())
    _check_webapp(running.lines, running.ports, creds)
    script = _walkthrough(running.lines)
    assert "curl" in script
    run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr + run.stdout
    out = run.stdout.splitlines()
    assert json.loads(out[0])["claims"]["aud"] == "photos"  # /whoami
    assert json.loads(out[1])["title"] == "beach"  # POST /photos
    assert [i["title"] for i in json.loads(out[2])["items"]] == ["beach"]
    assert out[3] == "401"  # contacts refuses a photos token
    assert json.loads(out[4]) == {"items": []}  # the user's own contacts
    assert "refresh_token" in json.loads(out[5])
    assert json.loads(out[6])["error"] == "invalid_grant"  # the spent refresh token
    assert json.loads(out[7])["keys"]


def _children(parent: int) -> dict[int, str]:
    """The live child processes of ``parent`` (Linux /proc): pid -> command line."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline
    return found


def _service_pid(script: int, needle: str) -> int:
    pids = [pid for pid, cmd in _children(script).items() if needle in cmd]
    assert len(pids) == 1, _children(script)
    return pids[0]


def _healthy(port: int) -> bool:
    try:
        return web.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the services in /proc")
def test_a_killed_issuer_is_restarted_and_the_others_keep_serving(running: Running) -> None:
    proc, ports, lines = running.proc, running.ports, running.lines
    issuer = _service_pid(proc.pid, "issuer serve")
    photos = _service_pid(proc.pid, "--name photos")
    contacts = _service_pid(proc.pid, "--name contacts")
    webapp = _service_pid(proc.pid, "webapp serve")
    os.kill(issuer, signal.SIGKILL)
    # The resource services verify offline: they are not stopped with the issuer.
    for _ in range(10):
        assert _healthy(ports["photos"])
        assert _healthy(ports["contacts"])
        assert _healthy(ports["webapp"])
        time.sleep(0.1)
    deadline = time.monotonic() + 60
    while not _healthy(ports["issuer"]):
        assert time.monotonic() < deadline, "\n".join(lines)
        assert proc.poll() is None, "\n".join(lines)
        time.sleep(0.1)
    restarted = _service_pid(proc.pid, "issuer serve")
    assert restarted != issuer
    running.restarted_issuer = restarted
    assert _service_pid(proc.pid, "--name photos") == photos
    assert _service_pid(proc.pid, "--name contacts") == contacts
    assert _service_pid(proc.pid, "webapp serve") == webapp
    assert _healthy(ports["photos"])
    said = "\n".join(lines)
    assert f"issuer (pid {issuer}) was killed by signal 9; restarting it in 1 s" in said
    assert f"restarted issuer (pid {restarted})" in said


def test_ctrl_c_stops_all_four_and_a_second_start_reuses_the_data(running: Running) -> None:
    """Ctrl-C stops every service (the restarted issuer too, when the test before killed one);
    started again on the same var directory, the stack keeps its demo client."""
    proc, ports = running.proc, running.ports
    creds = json.loads((running.var / "demo-credentials.json").read_text())
    _stop(proc)
    assert proc.returncode == 0
    assert not any(_listening(p) for p in ports.values())
    if running.restarted_issuer:
        assert not Path(f"/proc/{running.restarted_issuer}").exists()

    proc2, lines2 = _start(running.var.parent, ports)  # a second start reuses the data
    try:
        assert creds["client_secret"] in "\n".join(lines2)
    finally:
        _stop(proc2)
    assert not any(_listening(p) for p in ports.values())
