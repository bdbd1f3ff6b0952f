"""The compose stack (compose.yaml + compose.ci.yaml) for the container tests: one project with
its own name, images and free host ports, so it never meets a user's `keyhouse` project or
another test; brought up once per test module and always removed with its volumes.

Images are tagged keyhouse-e2e:compose, keyhouse-haproxy-e2e:compose and
keyhouse-postgres-e2e:compose: a rebuild replaces the tag, and the image it replaced is removed
(no dangling images pile up run after run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import web

ROOT = Path(__file__).resolve().parents[2]
FILES = ("compose.yaml", "compose.ci.yaml")
IMAGES = {
    "KEYHOUSE_IMAGE": "keyhouse-e2e:compose",
    "KEYHOUSE_HAPROXY_IMAGE": "keyhouse-haproxy-e2e:compose",
    "KEYHOUSE_POSTGRES_IMAGE": "keyhouse-postgres-e2e:compose",
}
CREDENTIALS = "/var/lib/keyhouse/credentials/demo.json"
BUILD_TIMEOUT = 900  # the first build installs the dependencies from the package index
# What the stack may not inherit from the caller: the defaults are what is tested.
_NOT_PASSED_ON = (
    "POSTGRES_PASSWORD",
    "ISSUER_SECRET_KEY",
    "COMPOSE_FILE",
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_PROFILES",
    *IMAGES,
)
# In-container readiness probe: prints "<status> <body>" (python3 is in the keyhouse image).
_READYZ = (
    "import urllib.request as r, urllib.error as e\n"
    "try:\n"
    "    x = r.urlopen('http://127.0.0.1:8000/readyz', timeout=5)\n"
    "    print(x.status, x.read().decode())\n"
    "except e.HTTPError as x:\n"
    "    print(x.code, x.read().decode())\n"
)


class ComposeError(RuntimeError):
    pass


def docker_problem() -> str | None:
    """Why the container tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
        version = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker info` or `docker compose version` timed out"
    if info.returncode != 0:
        return "no Docker engine answers `docker info`"
    if version.returncode != 0:
        return "`docker compose` (Compose v2) is not available"
    return None


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _image_id(tag: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


@dataclass
class ComposeStack:
    project: str
    issuer_port: int
    photos_port: int
    contacts_port: int
    webapp_port: int

    @classmethod
    def create(cls) -> ComposeStack:
        ports = free_ports(4)
        return cls(f"keyhouse-e2e-{os.getpid()}", *ports)

    @property
    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if k not in _NOT_PASSED_ON},
            **IMAGES,
            "KEYHOUSE_ISSUER_PORT": str(self.issuer_port),
            "KEYHOUSE_PHOTOS_PORT": str(self.photos_port),
            "KEYHOUSE_CONTACTS_PORT": str(self.contacts_port),
            "KEYHOUSE_WEBAPP_PORT": str(self.webapp_port),
        }

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.issuer_port}"

    @property
    def photos(self) -> str:
        return f"http://127.0.0.1:{self.photos_port}"

    @property
    def contacts(self) -> str:
        return f"http://127.0.0.1:{self.contacts_port}"

    @property
    def webapp(self) -> str:
        return f"http://127.0.0.1:{self.webapp_port}"

    @property
    def public_webapp(self) -> str:
        """The web app's origin as a browser on this machine has it (its ``WEBAPP_URL``)."""
        return f"http://localhost:{self.webapp_port}"

    @property
    def public_iss(self) -> str:
        return f"http://localhost:{self.issuer_port}"

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True, input_: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        # --env-file /dev/null: a ./.env (COMPOSE_FILE, POSTGRES_PASSWORD, ...) stays out.
        cmd = ["docker", "compose", "--env-file", os.devnull, "-p", self.project]
        for name in FILES:
            cmd += ["-f", name]
        return self._run([*cmd, *args], timeout=timeout, check=check, input_=input_)

    def _run(
        self, cmd: list[str], *, timeout: float, check: bool = True, input_: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input_,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"timed out after {timeout:g}s: {' '.join(cmd)}") from exc
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise ComposeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{tail}")
        return proc

    def build_and_up(self) -> None:
        """Build (once per image) and start everything; wait until every service is healthy."""
        self._run(["bash", "docker/build-base-image.sh"], timeout=BUILD_TIMEOUT)
        before = {tag: _image_id(tag) for tag in IMAGES.values()}
        self.compose("build", timeout=BUILD_TIMEOUT)
        for tag, old in before.items():
            if old is not None and _image_id(tag) != old:
                # The tag moved to the new build: drop what it replaced (fails harmlessly when
                # something else still uses it).
                self._run(["docker", "image", "rm", old], timeout=60, check=False)
        self.up()

    def up(self) -> None:
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=300)
        except ComposeError as exc:
            if "is unhealthy" not in str(exc):
                raise
            # `--wait` gives up at the first unhealthy state: on a loaded machine three health
            # probes in a row can time out (a python3 start each) while the service is fine.
            # What counts is what --wait asks, every service healthy, within the same bound.
            self._wait_healthy(deadline_s=240, cause=str(exc))

    def _wait_healthy(self, *, deadline_s: float, cause: str) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            lines = self.compose("ps", "-a", "--format", "json").stdout.splitlines()
            containers = [json.loads(line) for line in lines if line.strip()]
            waiting = [
                f"{c['Service']}: {c['State']} {c.get('Health', '')}".strip()
                for c in containers
                if (c["State"] == "running" and c.get("Health", "") not in ("", "healthy"))
                or c["State"] not in ("running", "exited")
                or (c["State"] == "exited" and c.get("ExitCode") != 0)
            ]
            if containers and not waiting:
                return
            if time.monotonic() >= deadline:
                raise ComposeError(f"{cause}\nnot healthy within {deadline_s:g}s: {waiting}")
            time.sleep(1)

    def down(self, *, volumes: bool) -> None:
        args = ["down", "--remove-orphans", "--timeout", "10"]
        # Teardown (with volumes) must not mask the test's own failure.
        self.compose(*args, *(["-v"] if volumes else []), timeout=180, check=not volumes)

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-aq", service).stdout.split()
        if len(ids) != 1:
            raise ComposeError(f"expected one container for {service}, found {ids}")
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = self._run(["docker", "inspect", self.container(service)], timeout=60).stdout
        data: dict[str, Any] = json.loads(out)[0]
        return data

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self._run(["docker", *args], timeout=timeout)

    def exec(self, service: str, *args: str, timeout: float = 60, input_: str | None = None) -> str:
        return self.compose("exec", "-T", service, *args, timeout=timeout, input_=input_).stdout

    def readyz(self, service: str) -> tuple[int, dict[str, Any]]:
        """GET /readyz inside the service's container: (status, JSON body)."""
        out = self.exec(service, "python3", "-c", _READYZ, timeout=30).strip()
        status, _, body = out.partition(" ")
        return int(status), json.loads(body)

    def wait_readyz(self, service: str, status: int, *, deadline_s: float) -> dict[str, Any]:
        """Poll the service's /readyz until it answers `status` (bounded deadline)."""
        deadline = time.monotonic() + deadline_s
        seen: tuple[int, dict[str, Any]] | None = None
        while time.monotonic() < deadline:
            try:
                seen = self.readyz(service)
            except (ComposeError, ValueError) as exc:
                seen = (0, {"probe": str(exc)[-200:]})
            if seen[0] == status:
                return seen[1]
            time.sleep(0.3)
        raise AssertionError(f"{service}/readyz not {status} within {deadline_s:g}s: {seen}")

    def credentials(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.exec("issuer1", "cat", CREDENTIALS))
        return data

    def logs(self, *services: str, tail: int = 80) -> str:
        proc = self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return proc.stdout + proc.stderr

    def client(self) -> httpx.Client:
        return web.Client(timeout=httpx.Timeout(15.0), trust_env=False)
