"""DPoP at real resource-service processes (issue 17 §1, RFC 9449 §7): tokens signed with a key
the test serves from a local JWKS (tests.support.jwks_fakes.JWKSServer), proofs signed with
``cryptography`` EC and RSA keys. One refusal per rule, and the Bearer path unchanged."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.harness.processes import Server
from shared.clock import FakeClock
from shared.dpop import access_token_hash, thumbprint
from tests.shared.test_dpop_support import EC_KEY, EC_KEY_2, RSA_KEY, make_proof, public_jwk
from tests.support import web
from tests.support.jwks_fakes import ISSUER, JWKSServer, json_answer, key, token
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

JKT = thumbprint(public_jwk(EC_KEY))
ALGS = 'algs="ES256 RS256"'
PUBLIC_URL = "https://api.example.com/photos-svc"


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer().start()
    server.set("/jwks.json", json_answer({"keys": [key(0).public_jwk()]}, max_age=300))
    try:
        yield server
    finally:
        server.stop()


def _service(stack: Stack, jwks: JWKSServer, label: str, *args: str, **env: str) -> Server:
    return stack.resource(
        "photos",
        *args,
        RESOURCE_ISSUER=ISSUER,
        RESOURCE_JWKS_URL=jwks.url + "/jwks.json",
        RESOURCE_DATABASE_PATH=str(stack.root / f"photos-{label}.db"),
        **env,
    ).start()


@pytest.fixture(scope="module")
def photos(module_stack: Stack, jwks_server: JWKSServer) -> Server:
    """Both schemes accepted (the default)."""
    return _service(module_stack, jwks_server, "default")


@pytest.fixture(scope="module")
def strict(module_stack: Stack, jwks_server: JWKSServer) -> Server:
    """RESOURCE_REQUIRE_DPOP=1 behind a proxy: RESOURCE_PUBLIC_URL set."""
    return _service(
        module_stack,
        jwks_server,
        "strict",
        RESOURCE_REQUIRE_DPOP="1",
        RESOURCE_PUBLIC_URL=PUBLIC_URL + "/",
    )


def _token(*, jkt: Any = JKT, **claims: Any) -> str:
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt} if isinstance(jkt, str) else jkt
    return token(key(0), FakeClock(time.time()), **claims)


def _proof(
    tok: str, url: str, method: str = "GET", signer: Any = EC_KEY, alg: str = "ES256", **over: Any
) -> str:
    payload = {
        "jti": str(uuid.uuid4()),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
        "ath": access_token_hash(tok),
        **over,
    }
    return make_proof(signer, alg, payload=payload)


def _get(
    service: Server, path: str, authorization: str | None = None, proofs: tuple[str, ...] = ()
) -> httpx.Response:
    headers = [("DPoP", p) for p in proofs]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    return web.get(service.url + path, headers=headers, timeout=10)


def _refused_proof(response: httpx.Response, description: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_dpop_proof", "error_description": description}
    assert response.headers.get_list("www-authenticate") == [
        f'DPoP realm="photos", error="invalid_dpop_proof", error_description="{description}", '
        + ALGS
    ]


def _refused_token(response: httpx.Response, description: str, scheme: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_token", "error_description": description}
    [challenge] = response.headers.get_list("www-authenticate")
    assert challenge.startswith(f'{scheme} realm="photos", error="invalid_token"'), challenge
    assert f'error_description="{description}"' in challenge


def test_a_bound_token_with_a_proof_is_accepted_and_bearer_is_unchanged(photos: Server) -> None:
    tok = _token()
    url = photos.url + "/whoami"
    for _ in range(2):  # verified, then from the token cache: a fresh proof each time
        response = _get(photos, "/whoami", f"DPoP {tok}", (_proof(tok, url),))
        assert response.status_code == 200, response.text
        assert response.json()["claims"]["cnf"] == {"jkt": JKT}
    # The query is not part of htu; an RSA proof key works as well.
    rsa_tok = _token(jkt=thumbprint(public_jwk(RSA_KEY)))
    proof = _proof(rsa_tok, url, signer=RSA_KEY, alg="RS256")
    assert _get(photos, "/whoami?x=1", f"DPoP {rsa_tok}", (proof,)).status_code == 200
    # POST with htm POST: the item is stored for the token's subject.
    writer = _token(scope="photos:read photos:write")
    created = web.post(
        photos.url + "/photos",
        json={"title": "sunset"},
        headers={
            "Authorization": f"DPoP {writer}",
            "DPoP": _proof(writer, photos.url + "/photos", "POST"),
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    # A token without cnf as Bearer: as before, DPoP header or not.
    plain = _token(jkt=None)
    assert _get(photos, "/whoami", f"Bearer {plain}").status_code == 200
    assert _get(photos, "/whoami", f"Bearer {plain}", ("junk",)).status_code == 200


def test_a_missing_scope_on_the_dpop_scheme_is_a_dpop_challenge(photos: Server) -> None:
    tok = _token()  # photos:read only
    url = photos.url + "/photos"
    denied = web.post(
        url,
        json={"title": "x"},
        headers={"Authorization": f"DPoP {tok}", "DPoP": _proof(tok, url, "POST")},
        timeout=10,
    )
    assert denied.status_code == 403, denied.text
    assert denied.headers.get_list("www-authenticate") == [
        'DPoP realm="photos", error="insufficient_scope", '
        f'error_description="requires scope photos:write", {ALGS}, scope="photos:write"'
    ]


def test_a_request_without_a_token_gets_both_challenges(photos: Server) -> None:
    response = _get(photos, "/photos")
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [
        'Bearer realm="photos"',
        f'DPoP realm="photos", {ALGS}',
    ]


def test_a_bound_token_sent_as_bearer_is_invalid_token(photos: Server) -> None:
    tok = _token()
    response = _get(photos, "/whoami", f"Bearer {tok}", (_proof(tok, photos.url + "/whoami"),))
    _refused_token(response, "the token is DPoP-bound: send it with the DPoP scheme", "Bearer")


def test_a_token_without_cnf_sent_as_dpop_is_invalid_token(photos: Server) -> None:
    tok = _token(jkt=None)
    response = _get(photos, "/whoami", f"DPoP {tok}", (_proof(tok, photos.url + "/whoami"),))
    _refused_token(response, "the token is not DPoP-bound: send it as a Bearer token", "DPoP")
    assert response.headers["www-authenticate"].endswith(ALGS)


def test_a_malformed_cnf_is_invalid_token(photos: Server) -> None:
    tok = _token(jkt={"jkt": JKT, "x5t#S256": JKT})
    response = _get(photos, "/whoami", f"DPoP {tok}", (_proof(tok, photos.url + "/whoami"),))
    _refused_token(response, "token 'cnf' claim must be an object holding only 'jkt'", "DPoP")


@pytest.mark.parametrize("count", [0, 2], ids=["no-proof", "two-proofs"])
def test_the_dpop_scheme_needs_exactly_one_proof(photos: Server, count: int) -> None:
    tok = _token()
    proofs = tuple(_proof(tok, photos.url + "/whoami") for _ in range(count))
    response = _get(photos, "/whoami", f"DPoP {tok}", proofs)
    _refused_proof(response, "exactly one DPoP header is required")


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("ath", "DPoP proof ath does not match the access token"),
        ("jkt", "DPoP proof key is not the key the token is bound to"),
        ("htm", "DPoP proof htm does not match the request method"),
        ("htu", "DPoP proof htu does not match the request URL"),
        ("iat", "DPoP proof iat is outside the acceptable window"),
    ],
)
def test_a_wrong_proof_is_invalid_dpop_proof(photos: Server, case: str, description: str) -> None:
    tok = _token()
    url = photos.url + "/whoami"
    proof = {
        "ath": lambda: _proof(tok, url, ath=access_token_hash(_token())),
        "jkt": lambda: _proof(tok, url, signer=EC_KEY_2),
        "htm": lambda: _proof(tok, url, method="POST"),
        "htu": lambda: _proof(tok, photos.url + "/photos"),
        "iat": lambda: _proof(tok, url, iat=int(time.time()) - 3600),
    }[case]()
    _refused_proof(_get(photos, "/whoami", f"DPoP {tok}", (proof,)), description)


def test_a_replayed_proof_is_refused(photos: Server) -> None:
    tok = _token()
    proof = _proof(tok, photos.url + "/whoami")
    assert _get(photos, "/whoami", f"DPoP {tok}", (proof,)).status_code == 200
    _refused_proof(
        _get(photos, "/whoami", f"DPoP {tok}", (proof,)), "DPoP proof has been used before"
    )
    metrics = web.get(photos.url + "/metrics", timeout=10).text
    assert 'keyhouse_token_verifications_total{result="invalid_dpop_proof"}' in metrics
    assert "keyhouse_dpop_replay_cache_capacity 200000.0" in metrics
    entries = re.search(r"^keyhouse_dpop_replay_cache_entries (\S+)$", metrics, re.M)
    assert entries is not None
    assert float(entries.group(1)) >= 1


def test_require_dpop_refuses_bearer_and_checks_htu_against_the_public_url(strict: Server) -> None:
    plain = _token(jkt=None)
    response = _get(strict, "/whoami", f"Bearer {plain}")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers.get_list("www-authenticate") == [
        'DPoP realm="photos", error="invalid_token", '
        f'error_description="this service accepts DPoP-bound tokens only", {ALGS}'
    ]
    missing = _get(strict, "/photos")
    assert missing.headers.get_list("www-authenticate") == [f'DPoP realm="photos", {ALGS}']
    tok = _token()
    # The URL the request arrived on is not the public one: refused.
    direct = _proof(tok, strict.url + "/whoami")
    _refused_proof(
        _get(strict, "/whoami", f"DPoP {tok}", (direct,)),
        "DPoP proof htu does not match the request URL",
    )
    public = _proof(tok, PUBLIC_URL + "/whoami")
    assert _get(strict, "/whoami", f"DPoP {tok}", (public,)).status_code == 200


def test_a_full_replay_cache_is_503_and_the_algorithm_list_is_configurable(
    module_stack: Stack, jwks_server: JWKSServer
) -> None:
    small = _service(
        module_stack,
        jwks_server,
        "small",
        RESOURCE_DPOP_REPLAY_CACHE_SIZE="2",
        RESOURCE_DPOP_ALGS="ES256",
    )
    url = small.url + "/whoami"
    rsa_tok = _token(jkt=thumbprint(public_jwk(RSA_KEY)))
    refused = _get(
        small, "/whoami", f"DPoP {rsa_tok}", (_proof(rsa_tok, url, signer=RSA_KEY, alg="RS256"),)
    )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].endswith('algs="ES256"')
    assert "alg is not allowed" in refused.json()["error_description"]
    tok = _token()
    for _ in range(2):
        assert _get(small, "/whoami", f"DPoP {tok}", (_proof(tok, url),)).status_code == 200
    full = _get(small, "/whoami", f"DPoP {tok}", (_proof(tok, url),))
    assert full.status_code == 503, full.text
    assert full.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(full.headers["retry-after"]) <= 65
    assert "www-authenticate" not in full.headers
    # Bearer requests do not use the cache: still served.
    assert _get(small, "/whoami", f"Bearer {_token(jkt=None)}").status_code == 200


def test_a_token_the_issuer_bound_works_at_photos_and_only_with_its_key(
    module_stack: Stack,
) -> None:
    """The whole way: a real issuer binds a client_credentials token to an EC key (RFC 9449 §5),
    a real photos verifying against that issuer accepts it with a proof by that key only."""
    stack = module_stack
    stack.issuer().start()
    photos = stack.resource("photos", RESOURCE_DATABASE_PATH=str(stack.root / "real.db")).start()
    client = stack.create_client(scope="photos:read", audiences=["photos"])
    token_proof = make_proof(
        EC_KEY,
        "ES256",
        payload={
            "jti": str(uuid.uuid4()),
            "htm": "POST",
            "htu": stack.issuer_url + "/token",
            "iat": int(time.time()),
        },
    )
    issued = web.post(
        stack.issuer_url + "/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        headers={"DPoP": token_proof},
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"
    tok = issued.json()["access_token"]
    url = photos.url + "/photos"
    assert _get(photos, "/photos", f"DPoP {tok}", (_proof(tok, url),)).status_code == 200
    _refused_token(
        _get(photos, "/photos", f"Bearer {tok}"),
        "the token is DPoP-bound: send it with the DPoP scheme",
        "Bearer",
    )
    _refused_proof(
        _get(photos, "/photos", f"DPoP {tok}", (_proof(tok, url, signer=EC_KEY_2),)),
        "DPoP proof key is not the key the token is bound to",
    )


def test_x_forwarded_proto_counts_for_htu_only_from_a_trusted_proxy(
    module_stack: Stack, jwks_server: JWKSServer, photos: Server
) -> None:
    """Issue 17: htu "correct behind a proxy that sets X-Forwarded-* only when configured to
    trust it". photos trusts no one (the default); this one trusts 127.0.0.1."""
    proxied = _service(module_stack, jwks_server, "proxied", "--forwarded-allow-ips", "127.0.0.1")
    for service, status in ((photos, 401), (proxied, 200)):
        tok = _token()
        https = service.url.replace("http://", "https://") + "/whoami"
        response = web.get(
            service.url + "/whoami",
            headers={
                "Authorization": f"DPoP {tok}",
                "DPoP": _proof(tok, https),
                "X-Forwarded-Proto": "https",
            },
            timeout=10,
        )
        assert response.status_code == status, (service.url, response.text)


def test_htu_is_matched_on_the_raw_path_normalised_and_without_a_host_header(
    photos: Server,
) -> None:
    tok = _token()
    # RFC 3986 §6.2.2: %6F is "o"; the proof may spell the path either way.
    for htu_path in ("/whoami", "/wh%6Fami"):
        proof = _proof(tok, photos.url + htu_path)
        assert _get(photos, "/wh%6Fami", f"DPoP {tok}", (proof,)).status_code == 200
    # HTTP/1.0 without Host: the server's own address.
    proof = _proof(tok, photos.url + "/whoami")
    request = (
        f"GET /whoami HTTP/1.0\r\nAuthorization: DPoP {tok}\r\nDPoP: {proof}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", photos.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
