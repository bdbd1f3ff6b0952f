"""The container stack for real (compose.yaml + compose.ci.yaml: PostgreSQL, two issuer replicas
behind HAProxy, photos, contacts), brought up once for this module and removed with its volumes
at the end, whatever happens:

- scripts/compose-smoke against it: tokens through HAProxy verified at both resource
  containers, the generated secrets, HAProxy's body cap, a key rotation;
- failover under load (tests.e2e.compose_failover): an issuer replica killed and started again
  costs no request; a PostgreSQL restart costs only 503 temporarily_unavailable with
  Retry-After, readiness follows the database, and everything recovers without restarting an
  issuer; no refresh chain breaks;
- persistence: `down` and `up` (volumes kept) keep clients, users, keys, refresh tokens and the
  resource services' items.

Skipped when no Docker engine answers, unless KEYHOUSE_REQUIRE_DOCKER=1 (CI), where that is a
failure instead."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.compose_failover import FailoverRun, run_failover
from tests.e2e.compose_stack import ROOT, ComposeError, ComposeStack, docker_problem

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    problem = docker_problem()
    if problem is not None:
        if os.environ.get("KEYHOUSE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"KEYHOUSE_REQUIRE_DOCKER=1 but {problem} (run docker/setup-engine.sh)")
        pytest.skip(problem)
    stack = ComposeStack.create()
    try:
        try:
            stack.build_and_up()
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n{stack.logs()}") from None
        yield stack
    finally:
        stack.down(volumes=True)


@pytest.fixture(scope="module")
def failover(stack: ComposeStack) -> FailoverRun:
    try:
        run = run_failover(stack)
    except (AssertionError, ComposeError) as exc:
        raise AssertionError(f"{exc}\n{stack.logs('haproxy', 'issuer1', 'issuer2')}") from None
    print(run.report)
    return run


def test_smoke_tokens_verify_at_both_services_and_rotate(stack: ComposeStack) -> None:
    env = {
        **stack.env,
        "KEYHOUSE_SMOKE_REUSE": "1",
        "KEYHOUSE_SMOKE_PROJECT": stack.project,
        "KEYHOUSE_SMOKE_PORTS": ",".join(
            str(p)
            for p in (stack.issuer_port, stack.photos_port, stack.contacts_port, stack.webapp_port)
        ),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compose-smoke")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"scripts/compose-smoke failed:\n{output[-8000:]}"
    assert "compose-smoke: OK" in output


def test_replica_kill_costs_no_request(failover: FailoverRun) -> None:
    phases = ("warm-up", "replica-killed", "replica-back")
    outcomes = failover.load.in_phases(*phases)
    failed = [o for o in outcomes if not o.ok]
    assert not failover.load.crashes, failover.report
    assert not failed, f"{len(failed)} failed requests, first {failed[:5]}\n{failover.report}"
    while_dead = [o for o in failover.load.in_phases("replica-killed") if o.kind != "whoami:photos"]
    assert len(while_dead) > 50, failover.report  # the load ran while issuer1 was dead


def test_database_restart_costs_only_503_with_retry_after(failover: FailoverRun) -> None:
    outcomes = failover.load.in_phases("database-down", "database-back")
    other = [o for o in outcomes if not (o.ok or o.clean_503)]
    assert not other, f"answers other than 200 or 503+Retry-After: {other[:5]}\n{failover.report}"
    assert any(o.clean_503 for o in outcomes), f"the outage was not felt\n{failover.report}"


def test_recovery_without_restarting_an_issuer(failover: FailoverRun) -> None:
    assert failover.recovery_seconds is not None, failover.report
    assert failover.issuers_after == failover.issuers_before_db, failover.report
    after = failover.load.in_phases("after")
    assert after, failover.report
    assert all(o.ok for o in after), failover.report


def test_no_refresh_chain_broken(failover: FailoverRun) -> None:
    for chain in failover.load.chains:
        assert not chain.breaks, failover.report
        # A chain whose refresh got a 503 went on with the same token and was answered after.
        assert chain.refreshes_by_phase["after"] > 0, failover.report
    assert any(c.retried_same_token for c in failover.load.chains), failover.report


def test_readiness_follows_the_database(failover: FailoverRun) -> None:
    for service in ("issuer1", "issuer2"):
        down = failover.readiness_down[service]
        assert down["status"] == "unavailable", down
        assert "database" in down["reason"], down
        assert failover.readiness_back[service] == {"status": "ready"}


def test_down_and_up_keep_clients_users_keys_refresh_tokens_and_items(
    stack: ComposeStack,
) -> None:
    creds = stack.credentials()
    client = json.loads(
        stack.exec(
            "issuer1", "issuer", "clients", "create", "--name", "kept", "--scope",
            "photos:read", "--audience", "photos", "--grant", "client_credentials", "--json",
        )
    )  # fmt: skip
    stack.exec(
        "issuer1", "issuer", "users", "create", "kept-user", "--password-stdin",
        "--scope", "contacts:read contacts:write", input_="kept-user-password-1\n",
    )  # fmt: skip
    kids = _kids(stack)
    demo = (creds["client_id"], creds["client_secret"])
    with stack.client() as http:
        login = http.post(
            f"{stack.issuer}/token",
            auth=demo,
            data={
                "grant_type": "password",
                "username": "kept-user",
                "password": "kept-user-password-1",
                "audience": "contacts",
                "scope": "contacts:read contacts:write",
            },
        )
        assert login.status_code == 200, login.text
        user_token, refresh = login.json()["access_token"], login.json()["refresh_token"]
        photos_form = {
            "grant_type": "client_credentials",
            "audience": "photos",
            "scope": "photos:read photos:write",
        }
        photos_token = http.post(f"{stack.issuer}/token", auth=demo, data=photos_form).json()[
            "access_token"
        ]
        for base, name, token in (
            (stack.photos, "photos", photos_token),
            (stack.contacts, "contacts", user_token),
        ):
            made = http.post(
                f"{base}/{name}", json={"title": f"kept {name}"}, headers=_bearer(token)
            )
            assert made.status_code == 201, made.text

    stack.down(volumes=False)
    stack.up()

    assert stack.credentials() == creds
    assert _kids(stack) == kids
    with stack.client() as http:
        kept = http.post(
            f"{stack.issuer}/token",
            auth=(client["client_id"], client["client_secret"]),
            data={"grant_type": "client_credentials", "audience": "photos"},
        )
        assert kept.status_code == 200, kept.text
        refreshed = http.post(
            f"{stack.issuer}/token",
            auth=demo,
            data={"grant_type": "refresh_token", "refresh_token": refresh},
        )
        assert refreshed.status_code == 200, refreshed.text
        for base, name, token in (
            (stack.photos, "photos", photos_token),
            (stack.contacts, "contacts", user_token),
        ):
            # The tokens from before still verify (same keys) and the items are still there.
            listed = http.get(f"{base}/{name}", headers=_bearer(token))
            assert listed.status_code == 200, listed.text
            assert [i["title"] for i in listed.json()["items"]] == [f"kept {name}"]


def test_a_person_signs_in_at_the_web_app_adds_a_photo_and_signs_out(stack: ComposeStack) -> None:
    """The web app of the compose stack, as a browser on the host meets it: its sign-in sends
    the browser to the issuer's public address (through HAProxy), the issuer's login page
    signs the demo user in, the callback starts the web app's session, and the page reads and
    writes photos with the user's token. Cookies are kept by hand (httpx sends no Secure
    cookie over plain http; a browser does, to localhost)."""
    creds = stack.credentials()
    jar: dict[str, str] = {}
    local = {stack.public_iss: stack.issuer, stack.public_webapp: stack.webapp}

    def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
        for public, reachable in local.items():
            if url.startswith(public):
                url = reachable + url[len(public) :]
        headers = dict(kwargs.pop("headers", {}))
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        response = http.request(method, url, headers=headers, follow_redirects=False, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            for flag in ("httponly", "secure", "samesite=lax"):  # attributes: any case
                assert flag in rest.lower(), header
            jar[name] = rest.split(";", 1)[0]
        return response

    with stack.client() as http:
        start = send("GET", f"{stack.public_webapp}/login")
        assert start.status_code == 303, start.text
        assert start.headers["location"].startswith(f"{stack.public_iss}/authorize?")
        page = send("GET", start.headers["location"])
        assert page.status_code == 200, page.text
        signed_in = send(
            "POST",
            f"{stack.public_iss}/login",
            data={
                "ticket": _hidden(page.text, "ticket"),
                "csrf_token": _hidden(page.text, "csrf_token"),
                "username": creds["username"],
                "password": creds["password"],
            },
            headers={"Origin": stack.public_iss},
        )
        assert signed_in.status_code == 303, signed_in.text
        callback = signed_in.headers["location"]
        assert callback.startswith(f"{stack.public_webapp}/callback?")
        back = send("GET", callback)
        assert back.status_code == 303, back.text
        home = send("GET", f"{stack.public_webapp}/")
        assert home.status_code == 200, home.text
        assert "Your photos and contacts" in home.text
        added = send(
            "POST",
            f"{stack.public_webapp}/items/photos",
            data={"title": "compose photo", "csrf_token": _hidden(home.text, "csrf_token")},
            headers={"Origin": stack.public_webapp},
        )
        assert added.status_code == 303, added.text
        again = send("GET", f"{stack.public_webapp}/")
        assert "<li>compose photo</li>" in again.text
        assert not any("eyJ" in v for v in jar.values()), "a token reached the browser's cookies"

        # Sign out: the web app's session and the issuer's end; the next sign-in asks again.
        out = send(
            "POST",
            f"{stack.public_webapp}/logout",
            data={"csrf_token": _hidden(again.text, "csrf_token")},
            headers={"Origin": stack.public_webapp},
        )
        assert out.status_code == 303, out.text
        assert out.headers["location"].startswith(f"{stack.public_iss}/logout?")
        ended = send("GET", out.headers["location"])
        assert ended.status_code == 303, ended.text
        assert ended.headers["location"].startswith(f"{stack.public_webapp}/signed-out")
        assert "Your photos and contacts" not in send("GET", f"{stack.public_webapp}/").text
        restart = send("GET", f"{stack.public_webapp}/login")
        assert 'name="password"' in send("GET", restart.headers["location"]).text


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert match is not None, f"no hidden input {name!r}"
    return match.group(1)


def _kids(stack: ComposeStack) -> list[str]:
    keys = json.loads(stack.exec("issuer1", "issuer", "keys", "list", "--json"))
    return sorted(str(k["kid"]) for k in keys)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
