"""Real processes: the resource service fetches keys from an issuer served over real TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from bench.harness.processes import Server
from tests.support import web
from tests.support.forkserver import launch
from tests.support.processes import BIN, Stack

pytestmark = pytest.mark.e2e


def _health(url: str) -> dict[str, object]:
    return dict(web.get(url + "/healthz", timeout=5).json()["jwks"])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_resource_service_fetches_keys_from_a_real_tls_issuer(
    stack: Stack, tmp_path: Path, host: str
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_pem, cert_pem, ca_pem = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    trusted = ssl.create_default_context(cafile=str(ca_pem))

    https_url = f"https://{host}:{stack.issuer_port}"
    stack.issuer_url = https_url
    stack.issuer_env["ISSUER_URL"] = https_url
    issuer = Server(
        [
            str(BIN / "issuer"),
            "serve",
            "--port",
            str(stack.issuer_port),
            "--ssl-keyfile",
            str(key_pem),
            "--ssl-certfile",
            str(cert_pem),
        ],
        {**stack.issuer_env, "KEYHOUSE_TEST_CWD": str(stack.root)},
        stack.issuer_port,
        stack.root / "issuer.log",
        scheme="https",
        verify=trusted,
        launch=launch,
    )
    stack.servers.append(issuer)
    issuer.start()

    photos = stack.resource(
        "photos", RESOURCE_ISSUER=https_url, RESOURCE_JWKS_CA_FILE=str(ca_pem)
    ).start()
    untrusting = stack.resource("contacts", RESOURCE_ISSUER=https_url).start()

    client = stack.create_client(scope="photos:read", audiences=["photos", "contacts"])
    response = web.post(
        https_url + "/token",
        data={"grant_type": "client_credentials", "audience": "photos"},
        auth=(client["client_id"], client["client_secret"]),
        verify=trusted,
        timeout=10,
    )
    token = response.json()["access_token"]
    who = web.get(photos.url + "/whoami", headers={"Authorization": f"Bearer {token}"})
    assert who.status_code == 200, who.text
    state = _health(photos.url)
    assert str(state["jwks_url"]).startswith("https://")
    assert state["usable"] is True

    # Without the CA the certificate is not trusted: no keys, and 503 (never 401).
    other = web.post(
        https_url + "/token",
        data={"grant_type": "client_credentials", "audience": "contacts"},
        auth=(client["client_id"], client["client_secret"]),
        verify=trusted,
        timeout=10,
    ).json()["access_token"]
    refused = web.get(untrusting.url + "/whoami", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert _health(untrusting.url)["usable"] is False
