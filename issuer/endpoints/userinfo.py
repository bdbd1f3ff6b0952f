"""``GET``/``POST /userinfo`` (OpenID Connect Core 1.0 §5.3): who the bearer of an access token is.

The token must be one this issuer signed (a published key, its ``iss``, unexpired, no leeway),
for any audience of this issuer, not revoked (``issuer/revoked.py``: a replayed authorization
code revokes the access token its first redemption issued), granted ``openid``, and issued to a
user who still exists and is not disabled. The answer is ``sub`` (the token's, ``user:<id>``)
and, with scope ``profile``, ``preferred_username``.

Refusals are RFC 6750 §3 challenges (``WWW-Authenticate: Bearer realm="issuer"``): no token,
401 without an error code; a bad one, 401 ``invalid_token``; no ``openid``, 403
``insufficient_scope``. The token travels in the ``Authorization`` header only (RFC 6750 §2.1);
one in the body or the query string is refused, not read.

A DPoP-bound token (``cnf.jkt``, RFC 9449) must come as ``Authorization: DPoP`` with one
``DPoP`` proof by its key (``htm`` the request's method, ``htu`` ``ISSUER_URL/userinfo``,
``ath`` the token's hash; the token endpoint's verifier, its algorithms and replay cache); sent
as ``Bearer`` it is ``invalid_token``, and so is an unbound token sent as ``DPoP``. A bad proof
is 401 ``invalid_dpop_proof`` with a ``WWW-Authenticate: DPoP`` challenge (RFC 9449 §7.1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer import http
from issuer.container import Issuer
from issuer.forms import parse_form
from shared.bearer import DPOP, extract_credentials
from shared.dpop import InvalidDPoPProof, dpop_challenge, one_proof
from shared.errors import (
    NO_STORE,
    InsufficientScope,
    InvalidToken,
    KeyhouseError,
    MethodNotAllowed,
)
from shared.protocol import USERINFO_PATH
from shared.tokens import AccessToken, TokenVerifier

REALM = "issuer"
USER_PREFIX = "user:"


async def userinfo(request: Request) -> Response:
    try:
        return await _userinfo(request)
    except KeyhouseError as exc:
        return http.error_response(exc, bearer_realm=REALM)


async def _userinfo(request: Request) -> Response:
    issuer = http.issuer_of(request)
    if request.method not in ("GET", "POST"):
        raise MethodNotAllowed("use GET or POST", headers={"Allow": "GET, POST"})
    query = request.scope.get("query_string", b"").decode("latin-1")
    other_carrier = "access_token" in {n for n, _ in parse_qsl(query, keep_blank_values=True)}
    if request.method == "POST":
        body = await http.read_body(
            request.receive, request.headers.get("content-length"), issuer.settings.max_body_bytes
        )
        if body:
            form = parse_form(body, request.headers.get("content-type"))
            other_carrier = other_carrier or "access_token" in form
    scheme, token = extract_credentials(
        request.headers.get("authorization"), other_carriers=other_carrier
    )
    access = _verify(issuer, token)
    if scheme == DPOP:
        _check_proof(request, issuer, token, access)
    elif access.cnf_jkt is not None:
        raise InvalidToken("a DPoP-bound access token must be sent with the DPoP scheme")
    if "openid" not in access.scopes:
        raise InsufficientScope("the access token was not granted openid", scope="openid")
    if not access.subject.startswith(USER_PREFIX):
        raise InvalidToken("the access token was not issued to a person")

    def look_up() -> dict[str, Any]:
        if issuer.revoked.is_revoked(access.jwt_id):
            raise InvalidToken("the access token was revoked")
        user = issuer.tokens.accounts.get_user_by_id(access.subject.removeprefix(USER_PREFIX))
        if user is None or user.disabled:
            raise InvalidToken("the access token's user is unknown or disabled")
        claims: dict[str, Any] = {"sub": access.subject}
        if "profile" in access.scopes:
            claims["preferred_username"] = user.username
        return claims

    claims = await anyio.to_thread.run_sync(look_up)
    return JSONResponse(claims, headers=dict(NO_STORE))


def _check_proof(request: Request, issuer: Issuer, token: str, access: AccessToken) -> None:
    """The request's one DPoP proof, by the key the token is bound to (401 otherwise)."""
    if access.cnf_jkt is None:
        raise InvalidToken("the access token is not DPoP-bound: send it as Bearer")
    verifier = issuer.tokens.dpop
    try:
        verifier.verify(
            one_proof(request.headers.getlist("dpop")),
            method=request.method,
            url=issuer.settings.issuer_url + USERINFO_PATH,
            access_token=token,
            expected_jkt=access.cnf_jkt,
        )
    except InvalidDPoPProof as exc:
        exc.status_code = 401  # a protected resource's answer (the verifier's is /token's 400)
        challenge = dpop_challenge(issuer.settings.dpop_algs, exc, realm=REALM)
        exc.headers = {**exc.headers, "WWW-Authenticate": challenge}
        raise


def _verify(issuer: Issuer, token: str) -> AccessToken:
    """An access token of this issuer, whichever of its audiences it names (no leeway: valid
    now, as RFC 7662 introspection judges)."""
    probe = TokenVerifier(issuer=issuer.settings.issuer_url, audience="", leeway=0)
    jwt = probe.parse(token)
    key = issuer.keyring.verification_key(jwt.header["kid"])
    if key is None:
        raise InvalidToken("the access token was not signed by a key of this issuer")
    aud = jwt.payload.get("aud")
    first = aud if isinstance(aud, str) else aud[0] if isinstance(aud, list) and aud else ""
    verifier = TokenVerifier(
        issuer=issuer.settings.issuer_url, audience=str(first), leeway=0, clock=issuer.keyring.clock
    )
    return verifier.verify(jwt, key)
