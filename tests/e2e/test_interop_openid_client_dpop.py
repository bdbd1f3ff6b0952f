"""A DPoP client no one here wrote (issue 17 §1): node's ``openid-client``
(tests/interop/openid_client_dpop.mjs) obtains a DPoP-bound token from a real issuer process with
a client_credentials grant and an ES256 key pair it makes itself, then calls a real photos
process with ``fetchProtectedResource`` and the same DPoP handle.

The script prints a JSON summary without any token; this test asserts on it: the token type is
DPoP, the token's ``cnf.jkt`` is the thumbprint of the script's key, photos answers 200 to the
DPoP request, and refuses the same token sent as Bearer and sent with a proof by another key.
openid-client is installed as in tests/e2e/test_interop_openid_client.py (the same ``node``
fixture): skipped without node or npm, unless KEYHOUSE_REQUIRE_NODE=1 (CI)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from bench.harness.processes import Server
from tests.e2e.test_interop_openid_client import INTEROP
from tests.e2e.test_interop_openid_client import node as node  # the fixture, shared
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

SCRIPT = INTEROP / "openid_client_dpop.mjs"


@pytest.fixture(scope="module")
def issuer_stack(module_stack: Stack) -> Stack:
    module_stack.issuer().start()
    return module_stack


@pytest.fixture(scope="module")
def photos(issuer_stack: Stack) -> Server:
    return issuer_stack.resource("photos").start()


@pytest.fixture(scope="module")
def confidential_client(issuer_stack: Stack) -> dict[str, Any]:
    return issuer_stack.create_client(scope="photos:read", audiences=["photos"])


def _run(node: str, settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
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


def _settings(stack: Stack, client: dict[str, Any], resource_url: str) -> dict[str, Any]:
    return {
        "issuer": stack.issuer_url,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "token_endpoint_auth_method": client.get("token_endpoint_auth_method"),
        "scope": "photos:read",
        "audience": "photos",
        "resource_url": resource_url,
    }


def test_openid_client_gets_a_dpop_bound_token_and_calls_photos_with_it(
    issuer_stack: Stack, photos: Server, node: str, confidential_client: dict[str, Any]
) -> None:
    stack = issuer_stack
    status, outcome = _run(node, _settings(stack, confidential_client, photos.url + "/whoami"))
    assert status == 0, f"openid-client failed: {outcome}"

    discovery = web.get(stack.issuer_url + "/.well-known/openid-configuration", timeout=10)
    assert outcome["discovery"]["issuer"] == stack.issuer_url
    assert outcome["discovery"]["token_endpoint"] == discovery.json()["token_endpoint"]
    assert "ES256" in outcome["discovery"]["dpop_signing_alg_values_supported"]

    # The issuer bound the token to the key openid-client made (RFC 9449 §5, §6.1).
    assert outcome["token_type"] == "dpop"  # openid-client lowercases it (case-insensitive)
    assert outcome["expires_in"] > 0
    claims = outcome["token_claims"]
    assert claims["iss"] == stack.issuer_url
    assert claims["aud"] in ("photos", ["photos"])
    assert claims["sub"] == f"client:{confidential_client['client_id']}"
    assert len(outcome["key_thumbprint"]) == 43  # base64url of a SHA-256 digest, no padding
    assert claims["cnf"] == {"jkt": outcome["key_thumbprint"]}

    # photos took it with openid-client's proof (htm, htu, ath, signed by that key).
    bound = outcome["dpop_fetch"]
    assert bound["status"] == 200, bound
    assert bound["thrown"] is None
    assert bound["json"]["claims"]["sub"] == claims["sub"]
    assert bound["json"]["claims"]["cnf"] == {"jkt": outcome["key_thumbprint"]}

    # The same token as a bearer token is refused: a bound token is never a bearer token.
    bearer = outcome["bearer_fetch"]
    assert bearer["status"] == 401, bearer
    assert bearer["error"] == "invalid_token"
    assert "invalid_token" in bearer["challenge_errors"]

    # And with a proof by a key it is not bound to.
    other = outcome["other_key_fetch"]
    assert other["status"] == 401, other
    assert other["thrown"] == "WWWAuthenticateChallengeError"
    assert other["error"] == "invalid_dpop_proof"
    assert "DPoP" in other["challenge_schemes"]


def test_openid_client_reports_a_refused_grant(
    issuer_stack: Stack, photos: Server, node: str, confidential_client: dict[str, Any]
) -> None:
    """The script's own check: a grant the issuer refuses ends the run, not a false success."""
    settings = _settings(issuer_stack, confidential_client, photos.url + "/whoami")
    settings["client_secret"] = "not the secret"
    status, outcome = _run(node, settings)
    assert status == 1
    assert outcome["status"] == 401, outcome
    assert outcome["code"] == "OAUTH_WWW_AUTHENTICATE_CHALLENGE"
    # RFC 6749 §5.2: client authentication by Basic failed, a Basic challenge (scheme lowercased).
    assert outcome["challenges"] == [{"scheme": "basic", "error": None}], outcome
