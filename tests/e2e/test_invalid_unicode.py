"""Invalid Unicode and other unservable JSON against a real resource-service process.

The service trusts one test key, published by a small JWKS server on loopback; tokens are signed
with it over exactly the bytes under test. Each case used to answer 500 (the claims or the item
could not be written back as UTF-8 JSON, or a number overflowed); now the token is 401
``invalid_token`` and the body 400 ``invalid_request``, and the process logs no error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bench.harness.processes import Server
from shared.jwks import encode_jwks
from shared.jws import b64url_encode
from shared.keys import SigningKey
from tests.support import web
from tests.support.jwks_fakes import ISSUER, key
from tests.support.local_http import LocalServer
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e


class _JWKSHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "public, max-age=300")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def photos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    handler = type(
        "Handler", (_JWKSHandler,), {"body": encode_jwks({"keys": [key(0).public_jwk()]})}
    )
    jwks = LocalServer(handler).start()
    stack = Stack(tmp_path_factory.mktemp("unicode"))
    try:
        server = stack.resource(
            "photos",
            RESOURCE_ISSUER=ISSUER,
            RESOURCE_JWKS_URL=f"{jwks.url}/jwks.json",
        ).start()
        yield server
    finally:
        stack.stop_all()
        jwks.stop()


@pytest.fixture
def photos(photos_server: Server) -> str:
    return photos_server.url


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "client:abc",
        "aud": "photos",
        # A day: the tokens below are signed when the module is imported (at collection); with
        # 600 s they had expired by the time this file ran late in a 12-minute suite on CI.
        "exp": now + 86400,
        "iat": now,
        "nbf": now,
        "jti": "j1",
        "client_id": "abc",
        "scope": "photos:read photos:write",
        **extra,
    }


def _sign(payload: bytes, header: bytes | None = None, signing: SigningKey = key(0)) -> str:
    if header is None:
        header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": signing.kid}).encode()
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = signing.private_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{b64url_encode(signature)}"


def _payload(**extra: Any) -> bytes:
    # json.dumps writes a lone surrogate as the escape "\ud800" (ensure_ascii).
    return json.dumps(_claims(**extra)).encode()


GOOD = _sign(_payload())
KID = key(0).kid.encode()

BAD_TOKENS: dict[str, str] = {
    "sub_lone_high_surrogate": _sign(_payload(sub="\ud800")),
    "custom_claim_lone_low_surrogate": _sign(_payload(name="x\udc00y")),
    "surrogate_in_member_name": _sign(_payload(**{"\ud800": 1})),
    "surrogate_in_aud_array": _sign(_payload(aud=["photos", "\udfff"])),
    "surrogate_as_utf8_bytes": _sign(_payload(sub="S").replace(b'"S"', b'"\xed\xa0\x80"')),
    "invalid_utf8": _sign(_payload(sub="S").replace(b'"S"', b'"\xff\xfe"')),
    "header_lone_surrogate": _sign(
        _payload(), b'{"alg":"RS256","typ":"at+jwt","kid":"' + KID + b'","x":"\\ud800"}'
    ),
    "header_invalid_utf8": _sign(
        _payload(), b'{"alg":"RS256","typ":"at+jwt","kid":"' + KID + b'","x":"\xc3"}'
    ),
    "number_overflowing_to_infinity": _sign(_payload()[:-1] + b', "x": 1e400}'),
    "exp_beyond_a_float": _sign(_payload(exp=10**400)),
    "deeply_nested_claim": _sign(_payload()[:-1] + b', "x": ' + b"[" * 200 + b"]" * 200 + b"}"),
}


def _get(url: str, token: str) -> httpx.Response:
    return web.get(url + "/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_control_a_well_formed_token_with_unicode_is_served(photos: str) -> None:
    response = _get(photos, _sign(_payload(sub="user:\U0001f600 zo\u00eb")))
    assert response.status_code == 200, response.text
    assert response.json()["claims"]["sub"] == "user:\U0001f600 zo\u00eb"
    assert _get(photos, GOOD).status_code == 200


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_unservable_token_is_invalid_token(photos: str, case: str) -> None:
    for path in ("/whoami", "/photos"):
        response = web.get(
            photos + path, headers={"Authorization": f"Bearer {BAD_TOKENS[case]}"}, timeout=10
        )
        assert response.status_code == 401, (case, path, response.text)
        assert response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


BAD_BODIES: dict[str, bytes] = {
    "escaped_lone_surrogate": b'{"title": "\\ud800"}',
    "surrogate_as_utf8_bytes": b'{"title": "\xed\xa0\x80"}',
    "invalid_utf8": b'{"title": "\xff"}',
    "deeply_nested": b'{"title": "t", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    "number_overflowing_to_infinity": b'{"title": "t", "x": 1e400}',
    "duplicate_title": b'{"title": "a", "title": "b"}',
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_unservable_body_is_invalid_request(photos: str, case: str) -> None:
    response = web.post(
        photos + "/photos",
        content=BAD_BODIES[case],
        headers={"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, (case, response.text)
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the body is not valid JSON",
    }


def test_body_error_reads_properly(photos: str) -> None:
    for body in (b'{"title": ""}', b'{"name": "x"}', b"[]", b'{"title": 7}', b'{"title": " "}'):
        response = web.post(
            photos + "/photos",
            content=body,
            headers={"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 400, response.text
        description = response.json()["error_description"]
        assert description == (
            "the body must be a JSON object whose 'title' is a non-blank string "
            "of at most 200 characters"
        )
        assert "?" not in description
        assert f'error_description="{description}"' in response.headers["www-authenticate"]
    created = web.post(
        photos + "/photos",
        json={"title": "caf\u00e9 \U0001f600"},
        headers={"Authorization": f"Bearer {GOOD}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "caf\u00e9 \U0001f600"


def test_nothing_above_was_logged_as_an_error(photos_server: Server) -> None:
    """Runs last in this module: no case above reached the 500 handler or uvicorn's."""
    logs = photos_server.logs()
    assert "unexpected error" not in logs
    assert "Traceback" not in logs
    assert "Exception in ASGI application" not in logs
