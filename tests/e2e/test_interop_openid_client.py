"""A client no one here wrote: node's ``openid-client`` (tests/interop/openid_client_flow.mjs)
signs a person in at a real issuer process as a public client: discovery, the authorization code
flow with PKCE (S256), state and nonce, the id_token validated (signature against the JWKS, iss,
aud, azp, exp, iat, nonce; at_hash by the script), then ``/userinfo``.

The script posts the login form itself (fetch, cookies carried by hand) and prints a JSON
summary without any token; this test asserts on it. openid-client is installed from npm into
tests/interop/node_modules (gitignored, no lock file) at the version pinned in
tests/interop/package.json when it is missing or another version. Without node or npm (or with a
node older than openid-client needs, or when npm cannot install) the test is skipped, unless
KEYHOUSE_REQUIRE_NODE=1 (CI), where that is a failure."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

INTEROP = Path(__file__).resolve().parents[1] / "interop"
SCRIPT = INTEROP / "openid_client_flow.mjs"
NPM_INSTALL = ("install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error")
NODE_MINIMUM = (20, 19)  # openid-client 6 (jose 6, oauth4webapi 3): WebCrypto as a global
# Nothing listens here: the script stops at the redirect and hands its URL to openid-client.
REDIRECT_URI = "http://127.0.0.1:8765/interop/node-callback"
USERNAME = "grace"
PASSWORD = "a long passphrase for node"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("KEYHOUSE_REQUIRE_NODE") == "1":
        pytest.fail(f"KEYHOUSE_REQUIRE_NODE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _installed_version() -> str | None:
    installed = INTEROP / "node_modules" / "openid-client" / "package.json"
    if not installed.exists():
        return None
    return str(json.loads(installed.read_text())["version"])


@pytest.fixture(scope="session")
def node() -> str:
    """node, with openid-client at the pinned version in tests/interop/node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, found in (("node", node), ("npm", npm)) if found is None)
        _unavailable(f"{missing} not found on PATH: openid-client needs node and npm")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    found = re.match(r"v(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < NODE_MINIMUM:
        _unavailable(
            f"node {version} is older than {'.'.join(map(str, NODE_MINIMUM))},"
            " which openid-client 6 needs"
        )
    pinned = json.loads((INTEROP / "package.json").read_text())["dependencies"]["openid-client"]
    # One install at a time, should two test runs share this checkout.
    with (INTEROP / ".npm-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() != pinned:
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-package-lock",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ],
                cwd=INTEROP,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stderr or result.stdout).splitlines()[-15:])
                _unavailable(f"npm install in {INTEROP} failed:\n{tail}")
            if _installed_version() != pinned:
                pytest.fail(f"npm installed openid-client {_installed_version()}, not {pinned}")
    return node


@pytest.fixture(scope="module")
def issuer_stack(module_stack: Stack) -> Stack:
    """One issuer for this module's tests."""
    module_stack.issuer().start()
    return module_stack


@pytest.fixture(scope="module")
def public_client(issuer_stack: Stack) -> dict[str, Any]:
    issuer_stack.create_user(USERNAME, PASSWORD, "photos:read")
    created = issuer_stack.cli(
        "clients", "create", "--name", "openid-client interop", "--json",
        "--scope", "openid profile photos:read",
        "--audience", "photos",
        "--grant", "authorization_code", "--grant", "refresh_token",
        "--redirect-uri", REDIRECT_URI,
        "--public", "--first-party",
    )  # fmt: skip
    client = dict(json.loads(created.stdout))
    assert client["token_endpoint_auth_method"] == "none"
    assert client.get("client_secret") is None
    return client


def _run_flow(node: str, settings: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The script's exit status and the JSON object it printed last."""
    result = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(settings),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=INTEROP,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, f"openid-client printed nothing (exit {result.returncode}): {result.stderr}"
    return result.returncode, dict(json.loads(lines[-1]))


def _settings(stack: Stack, client: dict[str, Any], scope: str, password: str) -> dict[str, str]:
    return {
        "issuer": stack.issuer_url,
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "username": USERNAME,
        "password": password,
    }


def test_openid_client_signs_in_with_pkce_and_nonce(
    issuer_stack: Stack, node: str, public_client: dict[str, Any]
) -> None:
    stack = issuer_stack
    status, outcome = _run_flow(
        node, _settings(stack, public_client, "openid profile photos:read", PASSWORD)
    )
    assert status == 0, f"openid-client failed: {outcome}"
    discovery = web.get(stack.issuer_url + "/.well-known/openid-configuration", timeout=10)
    assert outcome["discovery"] == {
        k: discovery.json()[k]
        for k in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint")
    } | {"jwks_uri": discovery.json()["jwks_uri"]}
    assert outcome["discovery"]["issuer"] == stack.issuer_url

    # The person saw the login form only (a first-party client: no consent); the issuer's
    # cookies all carried HttpOnly, Secure, SameSite=Lax and Path=/.
    assert outcome["pages"] == ["login"]
    assert outcome["issuer_cookies"]
    for cookie in outcome["issuer_cookies"]:
        assert cookie["name"].startswith("__Host-"), cookie
        assert {"httponly", "secure", "samesite=lax", "path=/"} <= set(cookie["attrs"]), cookie
    assert {"code", "state", "iss"} <= set(outcome["callback_params"])
    assert outcome["callback_iss"] == stack.issuer_url

    assert outcome["token_type"] == "bearer"
    assert set(outcome["scope"].split()) == {"openid", "profile", "photos:read"}
    assert outcome["expires_in"] > 0
    assert outcome["refresh_token_issued"] is True

    # openid-client verified the signature and the claims; the key is one the JWKS publishes.
    header = outcome["id_token_header"]
    assert header["alg"] == "RS256"
    jwks = web.get(discovery.json()["jwks_uri"], timeout=10).json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = outcome["id_token_claims"]
    assert claims["iss"] == stack.issuer_url
    assert claims["aud"] in (public_client["client_id"], [public_client["client_id"]])
    assert claims["nonce"] == outcome["nonce_sent"]
    assert claims["sub"].startswith("user:")
    assert isinstance(claims["auth_time"], int)
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]
    assert claims["sid"]
    assert outcome["at_hash_matches"] is True

    assert outcome["userinfo"]["sub"] == claims["sub"]
    assert outcome["userinfo"]["preferred_username"] == USERNAME


def test_openid_client_reports_a_wrong_password_as_a_refused_login(
    issuer_stack: Stack, node: str, public_client: dict[str, Any]
) -> None:
    """The script's own check: a login the issuer refuses ends the run, not a false success."""
    stack = issuer_stack
    status, outcome = _run_flow(
        node, _settings(stack, public_client, "openid profile", PASSWORD + " but wrong")
    )
    assert status == 1
    assert "login refused" in outcome["error"], outcome
