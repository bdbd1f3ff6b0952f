"""A real browser for the end-to-end tier: headless Chromium driven by Playwright for Python, and
the demo stack it signs in to (issuer, photos, contacts and the web app, each its own process),
with an httpx stand-in for a browser (:class:`Agent`) for what Chromium will not forge.

Chromium is the system's (Debian's ``chromium``; ``KEYHOUSE_CHROMIUM`` names another
executable): Playwright's own browser download is never used. Without one the browser tests are
skipped, unless ``KEYHOUSE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bench.harness.processes import Server
from issuer.accounts import AccountStore
from issuer.engines import make_engine
from issuer.seed import WEBAPP_SECRET_FILE, seed_demo
from tests.support import web
from tests.support.forkserver import launch
from tests.support.processes import BIN, Stack, base_env, free_port

COOKIE = "__Host-webapp-session"


def chromium_executable() -> str | None:
    return os.environ.get("KEYHOUSE_CHROMIUM") or shutil.which("chromium")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed afterwards; skips (or fails, with
    ``KEYHOUSE_REQUIRE_BROWSER=1``) when there is none."""
    path = chromium_executable()
    required = os.environ.get("KEYHOUSE_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        reason = "no chromium (install Debian's chromium, or set KEYHOUSE_CHROMIUM) or playwright"
        if required:
            pytest.fail(reason + " and KEYHOUSE_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    # Chromium's sandbox refuses to start as root (CI containers): no sandbox there.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class DemoStack:
    """The demo as ``./scripts/up`` runs it, on free ports, seeded by ``issuer.seed``."""

    stack: Stack
    photos: Server
    contacts: Server
    webapp: Server
    creds: dict[str, Any]

    @property
    def issuer_url(self) -> str:
        return self.stack.issuer_url

    @property
    def webapp_url(self) -> str:
        return self.webapp.url

    def user_token(self, audience: str, scope: str | None = None) -> str:
        """An access token for the demo user (password grant through the demo client)."""
        form = {
            "grant_type": "password",
            "username": self.creds["username"],
            "password": self.creds["password"],
            "audience": audience,
        }
        if scope:
            form["scope"] = scope
        return str(self.stack.token(self.creds, **form)["access_token"])

    def add_item(self, service: Server, name: str, title: str) -> None:
        token = self.user_token(name, f"{name}:write")
        response = web.post(
            f"{service.url}/{name}",
            json={"title": title},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text


def webapp_server(stack: Stack, *, photos: Server, contacts: Server, **env: str) -> Server:
    port = free_port()
    full_env = {k: v for k, v in base_env().items() if not k.startswith("WEBAPP_")}
    full_env.update(
        WEBAPP_URL=f"http://127.0.0.1:{port}",
        WEBAPP_ISSUER=stack.issuer_url,
        WEBAPP_PHOTOS_URL=photos.url,
        WEBAPP_CONTACTS_URL=contacts.url,
        WEBAPP_CLIENT_SECRET_FILE=str(stack.root / WEBAPP_SECRET_FILE),
    )
    full_env.update(env)
    server = Server(
        [str(BIN / "webapp"), "serve", "--port", str(port)],
        full_env,
        port,
        stack.root / "webapp.log",
        launch=launch,
    )
    stack.servers.append(server)
    return server


def start_demo_stack(root: Path, *, access_token_ttl: int) -> DemoStack:
    """Issuer (access tokens living ``access_token_ttl`` s), photos and contacts (no clock
    leeway: an expired token is refused at once), the web app; the demo clients and user seeded
    as ``./scripts/up`` seeds them, with the web app's redirect URIs on its port."""
    stack = Stack(root)
    try:
        stack.cli("init")
        issuer = stack.issuer(ISSUER_ACCESS_TOKEN_TTL=str(access_token_ttl))
        photos = stack.resource("photos", RESOURCE_TOKEN_LEEWAY="0")
        contacts = stack.resource("contacts", RESOURCE_TOKEN_LEEWAY="0")
        webapp = webapp_server(stack, photos=photos, contacts=contacts)
        engine = make_engine(stack.database_url)
        try:
            creds = seed_demo(
                AccountStore(engine), root / "demo.json", time.time(), webapp_url=webapp.url
            )
        finally:
            engine.dispose()
        for server in (issuer, photos, contacts, webapp):
            server.start()
    except BaseException:
        stack.stop_all()
        raise
    return DemoStack(stack, photos, contacts, webapp, creds)


# -- an httpx stand-in for a browser ------------------------------------------------------


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Agent:
    """A cookie jar per origin over one httpx client (redirects not followed). httpx does not
    send ``Secure`` cookies over plain http, so the jar is kept here and sent in a ``Cookie``
    header, as Chromium does on 127.0.0.1."""

    http: httpx.Client = field(default_factory=lambda: web.Client(timeout=10))
    jars: dict[str, dict[str, str]] = field(default_factory=dict)

    def request(self, method: str, url: str, **kw: object) -> httpx.Response:
        jar = self.jars.setdefault(origin_of(url), {})
        headers = dict(kw.pop("headers", None) or {})  # type: ignore[call-overload]
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        response = self.http.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]
        for header in response.headers.get_list("set-cookie"):
            first, *attributes = [part.strip() for part in header.split(";")]
            name, _, value = first.partition("=")
            if "Max-Age=0" in attributes or 'expires="Thu, 01 Jan 1970' in header:
                jar.pop(name, None)
            else:
                jar[name] = value
        return response

    def get(self, url: str, **kw: object) -> httpx.Response:
        return self.request("GET", url, **kw)


def location(response: httpx.Response) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    return response.headers["location"]


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, name
    return match.group(1)


def to_callback(agent: Agent, demo: DemoStack, user: tuple[str, str] | None = None) -> str:
    """``/login`` through the issuer's login form: the callback URL the issuer sends back."""
    username, password = user or (demo.creds["username"], demo.creds["password"])
    authorize = location(agent.get(demo.webapp_url + "/login"))
    assert authorize.startswith(demo.issuer_url + "/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 43
    assert len(query["nonce"][0]) >= 43
    page = agent.get(authorize)
    assert page.status_code == 200, page.text[:300]
    form = {
        "ticket": hidden(page.text, "ticket"),
        "csrf_token": hidden(page.text, "csrf_token"),
        "username": username,
        "password": password,
    }
    answer = agent.request(
        "POST",
        demo.issuer_url + "/login",
        data=form,
        headers={"Origin": demo.issuer_url},
    )
    callback = location(answer)
    assert callback.startswith(demo.webapp_url + "/callback?")
    return callback


def sign_in(agent: Agent, demo: DemoStack, user: tuple[str, str] | None = None) -> str:
    home = location(agent.get(to_callback(agent, demo, user)))
    assert home == "/"
    return agent.jars[demo.webapp_url][COOKIE]
