"""The grants of the token endpoint (RFC 6749 §4.1 authorization_code with PKCE, §4.3 password,
§4.4 client_credentials, §6 refresh_token) and the audience (RFC 8707) and scope (§3.3) each
resolves to.

:class:`Grants` is the part of :class:`~issuer.token_service.TokenService` that turns an
authenticated client's request into a token response; blocking work (database, argon2) runs in a
worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection

from issuer import audit
from issuer.access_tokens import AccessTokens, IdTokenTerms, TokenIds
from issuer.accounts import (
    MAX_USERNAME,
    AccountStore,
    Client,
    User,
    password_matches,
    user_subject,
)
from issuer.codes import CodeReplayed, CodeStore
from issuer.failed_attempts import FailedAttempts
from issuer.passwords import PasswordPool, hash_password, needs_rehash
from issuer.refresh import RefreshGrant, RefreshTokenStore, SuccessorTerms
from issuer.sessions import session_ended
from issuer.token_memos import MEMO_ENTRIES
from shared.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from shared.pkce import is_valid_verifier, verifier_matches
from shared.scopes import format_scope, parse_scope

T = TypeVar("T")


async def in_thread(func: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(func)


def resolve_scope(requested: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """RFC 6749 §3.3: omitted means everything allowed; asking beyond it is ``invalid_scope``."""
    if requested is None:
        return allowed
    scopes = parse_scope(requested)
    extra = scopes - allowed
    if extra:
        raise InvalidScope(f"scope not allowed: {format_scope(extra)}")
    return scopes


def requested_target(form: dict[str, str], allowed: tuple[str, ...]) -> str | None:
    """``audience=ID`` or RFC 8707 ``resource=ID`` when one of ``allowed``; None: omitted."""
    audience, resource = form.get("audience"), form.get("resource")
    if audience is not None and resource is not None and audience != resource:
        raise InvalidRequest("audience and resource name different targets")
    target = audience if audience is not None else resource
    if target is not None and target not in allowed:
        raise InvalidTarget("the requested audience is not allowed for this client")
    return target


def resolve_audience(form: dict[str, str], allowed: tuple[str, ...], default: str | None) -> str:
    """``audience=ID`` or RFC 8707 ``resource=ID``; omitted, the only (or the given) default."""
    target = requested_target(form, allowed)
    if target is None:
        if default is not None:
            return default
        if len(allowed) == 1:
            return allowed[0]
        raise InvalidRequest("this client has several audiences: name one with audience=")
    return target


class Grants(AccessTokens, FailedAttempts):
    """A mixin of ``TokenService``, which sets these attributes."""

    accounts: AccountStore
    refresh_tokens: RefreshTokenStore
    codes: CodeStore
    password_pool: PasswordPool
    _token_ids: TokenIds
    # (requested scope, the client's scopes) -> the granted scopes (client_credentials).
    _granted: dict[tuple[str | None, frozenset[str]], frozenset[str]]

    async def _client_credentials(
        self, form: dict[str, str], client: Client, jkt: str | None = None
    ) -> dict[str, Any]:
        audience = resolve_audience(form, client.audiences, None)
        requested = form.get("scope")
        key = (requested, client.scopes)
        scopes = self._granted.get(key)
        if scopes is None:  # parsed and checked once per scope string and client scope set
            scopes = resolve_scope(requested, client.scopes)
            if len(self._granted) >= MEMO_ENTRIES:
                self._granted.clear()
            self._granted[key] = scopes
        return await self._response(
            client.subject, client, audience, scopes, refresh_token=None, jkt=jkt
        )

    async def check_login(
        self, username: str, password: str, *, client_id: str, address: str, where: str = ""
    ) -> User | None:
        """The user ``username`` names if ``password`` is theirs and they are enabled; else
        None, once the failure is counted and audited (``where`` ends its detail, e.g. " on the
        login page"). Raises ``SlowDown`` while the username or the address is blocked, before
        the password is checked. The password grant and the login page both sign in through
        this; a hash made with older parameters is rehashed on success."""
        keys = [self.throttle.user(username[:MAX_USERNAME]), self.throttle.address(address)]
        now = self.clock()

        def look_up() -> User | None:
            # Blocked: refused before the password is even checked, right or wrong.
            self._check_blocked(keys, now)
            return self.accounts.find_login(username)

        # The database calls run in the ordinary worker threads; the password threads get the
        # argon2 check alone (see PasswordPool).
        user = await in_thread(look_up)
        matches = await self.password_pool.run(lambda: password_matches(user, password))
        if not matches or user is None:

            def failed() -> None:
                # Only for the audit log, never for the response: all failures read the same.
                self._failed(
                    keys,
                    now,
                    audit.USER_AUTH_FAILED,
                    address=address,
                    client_id=client_id,
                    subject=user.subject if user else None,
                    detail=(
                        "unknown username"
                        if user is None
                        else "login by a disabled user"
                        if user.disabled
                        else "wrong password"
                    )
                    + where,
                )

            await in_thread(failed)
            return None
        if needs_rehash(user.password_hash):
            await self._rehash(user, password)
        return user

    async def _password(
        self, form: dict[str, str], client: Client, address: str, jkt: str | None = None
    ) -> dict[str, Any]:
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise InvalidRequest("username and password are required")
        audience = resolve_audience(form, client.audiences, None)
        user = await self.check_login(
            username, password, client_id=client.client_id, address=address
        )
        if user is None:
            raise InvalidGrant("the username or password is incorrect")
        scopes = resolve_scope(form.get("scope"), client.scopes & user.scopes)
        refresh = family_id = None
        if "refresh_token" in client.grant_types:
            now = self.clock()
            family_id = secrets.token_hex(16)
            refresh = await in_thread(
                lambda: self.refresh_tokens.issue(
                    client_id=client.client_id,
                    user_id=user.user_id,
                    scopes=scopes,
                    audience=audience,
                    now=now,
                    jkt=jkt if client.public else None,
                    start_family=family_id,
                )
            )
        return await self._response(
            user.subject, client, audience, scopes, refresh_token=refresh, jkt=jkt, fid=family_id
        )

    async def _rehash(self, user: User, password: str) -> None:
        """Move a hash made with older parameters to today's, at the login that proves the
        password: until then such an account's check costs a different time than others'."""
        new_hash = await self.password_pool.run(lambda: hash_password(password))
        await in_thread(lambda: self.accounts.replace_password_hash(user, new_hash))

    async def _refresh(
        self, form: dict[str, str], client: Client, address: str, jkt: str | None = None
    ) -> dict[str, Any]:
        """RFC 6749 §6. A family bound to a DPoP key (a public client's, RFC 9449 §5) is
        refreshed only with a proof by that key (``jkt``); without one, ``invalid_grant`` and the
        token stays unused."""
        presented = form.get("refresh_token")
        if not presented:
            raise InvalidRequest("refresh_token is required")
        if len(presented) > 256:
            raise InvalidGrant("the refresh token is invalid")

        def narrow(grant: RefreshGrant, conn: Connection) -> tuple[frozenset[str], str]:
            # Runs inside the redemption's transaction: raising here leaves the token unused.
            user = self.accounts.get_user_by_id(grant.user_id, conn=conn)
            if user is None or user.disabled:
                raise InvalidGrant("the refresh token is invalid, expired or revoked")
            # RFC 6749 §6: the scope may narrow, never widen.
            return (
                resolve_scope(form.get("scope"), grant.scopes),
                resolve_audience(form, client.audiences, grant.audience),
            )

        # The same decision made ahead of the grant (SuccessorTerms): what narrow returns for an
        # enabled user whose grant allows the requested scopes. A request narrow would refuse
        # gets no terms, so it is refused by narrow, in narrow's order.
        requested = form.get("scope")
        terms: SuccessorTerms | None
        try:
            terms = SuccessorTerms(
                parse_scope(requested) if requested is not None else None,
                requested_target(form, client.audiences),
            )
        except (InvalidRequest, InvalidScope, InvalidTarget):
            terms = None
        now = self.clock()
        redemption = await self.refresh_tokens.redeem(
            presented,
            client_id=client.client_id,
            now=now,
            narrow=narrow,
            replay_grace=self.settings.refresh_replay_grace,
            terms=terms,
            jkt=jkt,
        )
        if redemption.replayed and redemption.grant is not None:
            family = redemption.grant
            await in_thread(
                lambda: self.audit.record(
                    audit.REFRESH_REPLAY_GRACE,
                    client_id=client.client_id,
                    subject=user_subject(family.user_id),
                    address=address,
                    detail=(
                        "redeemed refresh token presented again within the replay grace; "
                        f"its unused successor spent, a new one issued; family {family.family_id}"
                    ),
                )
            )
        if redemption.status in ("reused", "wrong_client") and redemption.grant is not None:
            grant = redemption.grant
            reused = redemption.status == "reused"
            await in_thread(
                lambda: self.audit.record(
                    audit.REFRESH_REUSE if reused else audit.REFRESH_WRONG_CLIENT,
                    client_id=client.client_id,
                    subject=user_subject(grant.user_id),
                    address=address,
                    detail=(
                        f"superseded refresh token presented; family {grant.family_id} revoked"
                        if reused
                        else f"refresh token of client {grant.client_id} presented; refused"
                    ),
                )
            )
        if redemption.status == "wrong_key":
            raise InvalidGrant(
                "the refresh token is bound to a DPoP key: send a DPoP proof signed by that key"
            )
        if redemption.status != "ok" or redemption.grant is None:
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        return await self._response(
            user_subject(redemption.grant.user_id),
            client,
            redemption.audience,
            redemption.scopes,
            refresh_token=redemption.token,
            sid=redemption.grant.sid,  # tokens refreshed from a sign-in keep its session
            jkt=jkt,
            fid=redemption.grant.family_id,
        )

    async def _authorization_code(
        self,
        form: dict[str, str],
        client: Client,
        address: str = "unknown",
        jkt: str | None = None,
    ) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5, §4.6, S256 only) and OpenID Connect.

        What the redemption will issue (the refresh family, the access token's ``jti`` and end)
        is decided first and recorded with the code as it is redeemed, before anything is
        signed: a second presentation of the code, even one racing this one, revokes exactly
        that (RFC 6749 §4.1.2, issuer/codes.py) and is ``invalid_grant``. Client, redirect URI
        and verifier are checked after the redemption, so a failed check still uses the code up:
        whoever holds a stolen code gets one try (RFC 9700 §4.5.3 allows this; the client starts
        a new authorization request). Then the user must still be enabled and the sign-in
        session the code came from still not ended (signed out since: ``invalid_grant``).
        """
        code, redirect_uri, verifier = (
            form.get("code"),
            form.get("redirect_uri"),
            form.get("code_verifier"),
        )
        if not code:
            raise InvalidRequest("code is required")
        if not redirect_uri:
            raise InvalidRequest("redirect_uri is required")
        if not verifier:
            raise InvalidRequest(
                "code_verifier is required: every code is bound to a PKCE challenge"
            )
        if not is_valid_verifier(verifier):
            raise InvalidRequest("code_verifier must be 43-128 unreserved characters (RFC 7636)")
        now = self.clock()
        family_id = secrets.token_hex(16) if "refresh_token" in client.grant_types else None
        jti = self._token_ids.next()
        access_expires_at = float(int(now) + self.settings.access_token_ttl)
        try:
            granted = await in_thread(
                lambda: self.codes.redeem(
                    code,
                    now=now,
                    family_id=family_id,
                    access_jti=jti,
                    access_expires_at=access_expires_at,
                )
            )
        except CodeReplayed as replay:
            issued_to, user_id = replay.client_id, replay.user_id
            await in_thread(
                lambda: self.audit.record(
                    audit.CODE_REUSE,
                    client_id=client.client_id,
                    subject=user_subject(user_id),
                    address=address,
                    detail=(
                        "authorization code presented again; what its first redemption issued "
                        f"is revoked (issued to client {issued_to})"
                    ),
                )
            )
            raise
        if granted.client_id != client.client_id:
            raise InvalidGrant("the authorization code was not issued to this client")
        if granted.redirect_uri != redirect_uri:
            raise InvalidGrant("redirect_uri differs from the authorization request's")
        if not verifier_matches(verifier, granted.code_challenge):
            raise InvalidGrant("code_verifier does not match the code_challenge")

        def check_user_and_session_then_issue_refresh() -> str | None:
            with self.accounts.engine.connect() as conn:
                user = self.accounts.get_user_by_id(granted.user_id, conn=conn)
                if user is None or user.disabled:
                    raise InvalidGrant("the authorization code is invalid, expired or used")
                # Signed out (or disabled, which ends sessions) since the code was issued: the
                # code is worth nothing. A logout racing this check still revokes the family:
                # refresh_tokens.issue stores it revoked once the session has ended.
                if session_ended(conn, granted.sid):
                    raise InvalidGrant("the sign-in session of this code has ended")
            if family_id is None:
                return None
            return self.refresh_tokens.issue(
                client_id=client.client_id,
                user_id=granted.user_id,
                scopes=granted.scopes,
                audience=granted.audience,
                now=now,
                family_id=family_id,
                sid=granted.sid,
                jkt=jkt if client.public else None,  # RFC 9449 §5: a public client's family
            )

        refresh = await in_thread(check_user_and_session_then_issue_refresh)
        return await self._response(
            user_subject(granted.user_id),
            client,
            granted.audience,
            granted.scopes,
            refresh_token=refresh,
            sid=granted.sid,
            jti=jti,
            now=now,
            jkt=jkt,
            fid=family_id,
            id_token=(
                IdTokenTerms(auth_time=granted.auth_time, nonce=granted.nonce)
                if "openid" in granted.scopes
                else None
            ),
        )
