"""The stack under test, driven from outside as an operator would: a private issuer data
directory, its CLI, the issuer and resource-service servers, and plain HTTP helpers."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.config import AUDIENCE, SCOPE, BenchError, Config, Context, pin
from bench.harness.processes import Server


def http(
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, headers, body) whatever the status."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if form is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: form-urlencode each part, then Basic.
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def check_rs256(token: str, who: str) -> dict[str, Any]:
    """The token's JOSE header; BenchError unless it is an RS256 JWT."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, IndexError) as exc:
        raise BenchError(f"{who} returned something that is not a JWT: {token[:60]!r}") from exc
    if header.get("alg") != "RS256":
        raise BenchError(f"{who} token header is {header}, expected alg RS256")
    return dict(header)


def claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (the bench only reads what it was just given)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError) as exc:
        raise BenchError(f"not a JWT: {token[:20]!r}...") from exc
    if not isinstance(data, dict):
        raise BenchError("a JWT whose payload is not a JSON object")
    return data


def expect_ok(url: str, token: str | None = None) -> None:
    """GET ``url`` (with ``token`` as bearer) must answer 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = http("GET", url, headers=headers)
    if status != 200:
        raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")


def bench_server(
    cfg: Config,
    name: str,
    cmd: list[str],
    *,
    port: int,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    cpus: str | None = None,
    cwd: Path | None = None,
) -> Server:
    """A server of the benchmark: pinned to the server CPU(s) (or ``cpus``), this process's
    environment plus ``env``, logged to NAME.log in ``cwd`` (default: the run directory)."""
    return Server(
        pin(cpus or cfg.server_cpus, cmd, cfg),
        {**os.environ, **(env or {})},
        port,
        (cwd or cfg.run_dir) / f"{name}.log",
        ready_path=ready_path,
        cwd=cwd,
        name=name,
    )


@dataclass
class Client:
    client_id: str
    client_secret: str

    @property
    def authorization(self) -> str:
        return basic(self.client_id, self.client_secret)


def token_body(audience: str = AUDIENCE, scope: str = SCOPE) -> str:
    """The client_credentials form every token load sends."""
    return urllib.parse.urlencode(
        {"grant_type": "client_credentials", "audience": audience, "scope": scope}
    )


class Stack:
    """A private issuer data dir plus helpers to run the CLI and servers against it."""

    def __init__(self, ctx: Context, label: str, database_url: str | None = None) -> None:
        """``database_url``: the issuer's database (default: a SQLite file in the stack's own
        directory)."""
        self.cfg = ctx.cfg
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.cfg.run_dir))
        self.issuer_port = self.cfg.base_port
        self.resource_port = self.cfg.base_port + 1
        self.issuer_url = f"http://127.0.0.1:{self.issuer_port}"
        self.database_url = database_url or f"sqlite:///{self.dir / 'issuer.db'}"
        self.env = {
            "ISSUER_URL": self.issuer_url,
            "ISSUER_DATABASE_URL": self.database_url,
            "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
            "ISSUER_ACCESS_TOKEN_TTL": "3600",
        }
        self._initialised = False

    def cli(self, args: list[str], stdin: str | None = None) -> str:
        if not self._initialised and args[:1] != ["init"]:
            self._initialised = True  # only `issuer init` and `issuer serve` create the store
            self.cli(["init"])
        cmd = [*self.cfg.issuer_cmd, *args]
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            cwd=self.dir,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"`{shlex.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def create_client(
        self, name: str, grants: tuple[str, ...] = ("client_credentials",), scope: str = SCOPE
    ) -> Client:
        args = ["clients", "create", "--name", name, "--scope", scope, "--audience", AUDIENCE]
        for g in grants:
            args += ["--grant", g]
        out = self.cli([*args, "--json"])
        try:
            data = json.loads(out)
        except json.JSONDecodeError as exc:
            raise BenchError(f"`issuer clients create --json` printed no JSON: {out!r}") from exc
        return Client(data["client_id"], data["client_secret"])

    def create_user(self, username: str, password: str, scope: str = SCOPE) -> None:
        self.cli(
            ["users", "create", username, "--password-stdin", "--scope", scope], password + "\n"
        )

    def issuer(
        self,
        workers: int = 1,
        cpus: str | None = None,
        *,
        port: int | None = None,
        name: str | None = None,
        args: tuple[str, ...] = (),
    ) -> Server:
        """An issuer on ``port`` (default: the stack's issuer port; a replica behind a balancer
        listens on a port of its own while ISSUER_URL stays the public one); ``args``: more
        ``issuer serve`` options."""
        port = port or self.issuer_port
        cmd = [*self.cfg.issuer_cmd, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        return bench_server(
            self.cfg,
            name or f"issuer-w{workers}",
            cmd,
            port=port,
            env=self.env,
            cpus=cpus,
            cwd=self.dir,
        )

    def resource(
        self, workers: int = 1, env: dict[str, str] | None = None, cpus: str | None = None
    ) -> Server:
        cmd = [
            *self.cfg.resource_cmd,
            "serve",
            "--name",
            AUDIENCE,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.resource_port),
        ]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        renv = {"RESOURCE_NAME": AUDIENCE, "RESOURCE_ISSUER": self.issuer_url, **(env or {})}
        return bench_server(
            self.cfg,
            f"resource-{AUDIENCE}-w{workers}",
            cmd,
            port=self.resource_port,
            env=renv,
            cpus=cpus,
            cwd=self.dir,
        )

    def token_body(self) -> str:
        return token_body()

    def post_token(
        self, client: Client, form: dict[str, str], url: str | None = None
    ) -> dict[str, Any]:
        """One ``POST /token`` (to ``url``, default the stack's issuer) that must answer 200 with
        an RS256 access token; its JSON body."""
        status, _, body = http(
            "POST",
            f"{url or self.issuer_url}/token",
            form=form,
            headers={"Authorization": client.authorization},
        )
        if status != 200:
            raise BenchError(
                f"POST /token ({form.get('grant_type')}) answered {status}: {body[:300]!r}"
            )
        data: dict[str, Any] = json.loads(body)
        check_rs256(str(data["access_token"]), "issuer")
        return data

    def get_token(self, client: Client, url: str | None = None) -> str:
        form = {"grant_type": "client_credentials", "audience": AUDIENCE, "scope": SCOPE}
        return str(self.post_token(client, form, url)["access_token"])
