"""The administration API: signing keys (``/admin/keys``: list, rotate, revoke) and users
(``/admin/users/{username}/disable`` and ``/enable``).

A bearer-protected resource of the issuer itself: every call needs an access token issued by
this issuer for the ``issuer`` audience holding ``issuer:admin`` (:func:`require_admin`). Its
refusals carry RFC 6750 challenges, realm ``issuer`` (:func:`issuer.http.handle_keyhouse_error`).
"""

from __future__ import annotations

import json

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import issuer_of
from shared.bearer import extract_bearer
from shared.errors import (
    NO_STORE,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    KeyhouseError,
)
from shared.protocol import ADMIN_SCOPE


def require_admin(request: Request) -> None:
    """Refuse the request unless it carries a valid admin token; count the verification."""
    issuer = issuer_of(request)
    try:
        token = extract_bearer(request.headers.get("authorization"))
        verifier = issuer.admin_verifier
        jwt = verifier.parse(token)
        key = issuer.keyring.verification_key(jwt.header["kid"])
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        access = verifier.verify(jwt, key)
        if access.cnf_jkt is not None:
            # A DPoP-bound token proves nothing without its key's proof, which the admin API
            # does not take (RFC 9449 §7.2: a bound token is never a bearer token).
            raise InvalidToken("DPoP-bound tokens are not accepted by the admin API")
        if ADMIN_SCOPE not in access.scopes:
            raise InsufficientScope(f"requires scope {ADMIN_SCOPE}", scope=ADMIN_SCOPE)
    except KeyhouseError as exc:
        issuer.metrics.verifications.labels(exc.error).inc()
        raise
    issuer.metrics.verifications.labels("valid").inc()
    # An administrator is at work: have a replacement key ready, so that an emergency
    # revocation of the signing key does not wait for RSA key generation (KeyAdmin).
    issuer.admin.prepare_spare()


async def admin_keys(request: Request) -> Response:
    require_admin(request)
    issuer = issuer_of(request)
    status = await anyio.to_thread.run_sync(issuer.admin.status)
    return JSONResponse(status, headers=NO_STORE)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


async def _rotate_now_flag(request: Request) -> bool:
    """``now`` from the query string (``?now=true``) or a JSON body ``{"now": true}``."""
    raw: object = request.query_params.get("now")
    body = await request.body()
    if body.strip():
        try:
            data = json.loads(body)
        except ValueError:
            raise InvalidRequest('the body must be JSON like {"now": true}') from None
        if not isinstance(data, dict) or set(data) - {"now"}:
            raise InvalidRequest('the body must be JSON like {"now": true}')
        raw = data.get("now", raw)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise InvalidRequest("now must be true or false")


async def admin_rotate(request: Request) -> Response:
    require_admin(request)
    issuer = issuer_of(request)
    immediate = await _rotate_now_flag(request)
    record = await anyio.to_thread.run_sync(lambda: issuer.admin.rotate(now=immediate))
    await anyio.to_thread.run_sync(issuer.keyring.reload)
    status = 201 if record["created"] else 200
    return JSONResponse(record, status_code=status, headers=NO_STORE)


async def admin_disable_user(request: Request) -> Response:
    """``POST /admin/users/{username}/disable``: as ``issuer users disable`` (refresh tokens
    revoked, sign-in sessions ended, the account-disabled event; issuer/user_admin.py)."""
    return await _set_disabled(request, disabled=True)


async def admin_enable_user(request: Request) -> Response:
    """``POST /admin/users/{username}/enable``: as ``issuer users enable``."""
    return await _set_disabled(request, disabled=False)


async def _set_disabled(request: Request, *, disabled: bool) -> Response:
    require_admin(request)
    issuer = issuer_of(request)
    username = request.path_params["username"]
    change = await anyio.to_thread.run_sync(
        lambda: issuer.users.set_disabled(username, disabled, by="the admin API")
    )
    return JSONResponse(change.to_dict(), headers=NO_STORE)


async def admin_revoke(request: Request) -> Response:
    require_admin(request)
    issuer = issuer_of(request)
    kid = request.path_params["kid"]
    record = await anyio.to_thread.run_sync(lambda: issuer.admin.revoke(kid))
    await anyio.to_thread.run_sync(issuer.keyring.reload)
    return JSONResponse(record, headers=NO_STORE)
