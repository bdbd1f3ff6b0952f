"""The token endpoint's protocol logic (RFC 6749 §4.3, §4.4, §6; RFC 8707; RFC 9068).

Framework-free: the HTTP layer hands over the parsed form and the ``Authorization`` header and
serialises whatever this returns or raises. Blocking work (database, argon2) runs in a worker
thread so the event loop keeps serving.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection

from issuer import audit
from issuer.accounts import MAX_USERNAME, AccountStore, Client, User, password_matches
from issuer.audit import AuditLog
from issuer.batch_signer import BatchSigner
from issuer.client_auth import authenticate_client, client_credentials
from issuer.keys import KeyRing
from issuer.passwords import PasswordPool, hash_password, needs_rehash
from issuer.refresh import RefreshGrant, RefreshTokenStore
from issuer.settings import IssuerSettings
from issuer.throttle import Block, Throttle, ThrottleKey
from shared.clock import Clock, system_clock
from shared.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from shared.protocol import GRANT_TYPES
from shared.scopes import format_scope, parse_scope
from shared.tokens import access_token_claims

T = TypeVar("T")
CLIENT_CACHE_SECONDS = 2.0
UNKNOWN_ADDRESS = "unknown"
# Bounds of the per-process memos on the client_credentials path (each is emptied when full).
MEMO_ENTRIES = 10_000
# The longest Authorization header whose verification is remembered (a padded one is checked
# each time, so no one fills memory with valid variants of one credential).
MAX_REMEMBERED_HEADER = 512


async def in_thread(func: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(func)


class TokenIds:
    """``jti`` values: 128 random bits each, base64url (22 characters, as
    ``secrets.token_urlsafe(16)``), cut from one ``os.urandom`` read per 256 tokens instead of
    a system call and a ``SystemRandom`` round trip per token."""

    BYTES = 16
    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(self.BYTES * self.BATCH), 0
            raw = self._pool[self._at : self._at + self.BYTES]
            self._at += self.BYTES
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenResponse:
    body: dict[str, Any]
    grant_type: str


def resolve_scope(requested: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """RFC 6749 §3.3: omitted means everything allowed; asking beyond it is ``invalid_scope``."""
    if requested is None:
        return allowed
    scopes = parse_scope(requested)
    extra = scopes - allowed
    if extra:
        raise InvalidScope(f"scope not allowed: {format_scope(extra)}")
    return scopes


def resolve_audience(form: dict[str, str], allowed: tuple[str, ...], default: str | None) -> str:
    """``audience=ID`` or RFC 8707 ``resource=ID``; omitted, the only (or the given) default."""
    audience, resource = form.get("audience"), form.get("resource")
    if audience is not None and resource is not None and audience != resource:
        raise InvalidRequest("audience and resource name different targets")
    target = audience if audience is not None else resource
    if target is None:
        if default is not None:
            return default
        if len(allowed) == 1:
            return allowed[0]
        raise InvalidRequest("this client has several audiences: name one with audience=")
    if target not in allowed:
        raise InvalidTarget("the requested audience is not allowed for this client")
    return target


class TokenService:
    def __init__(
        self,
        settings: IssuerSettings,
        keyring: KeyRing,
        accounts: AccountStore,
        refresh_tokens: RefreshTokenStore,
        *,
        clock: Clock = system_clock,
        throttle: Throttle | None = None,
        audit_log: AuditLog | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.accounts = accounts
        self.refresh_tokens = refresh_tokens
        self.clock = clock
        self.password_pool = PasswordPool()
        self.throttle = throttle or Throttle(
            accounts.engine,
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window=settings.login_failure_window,
        )
        self.audit = audit_log or AuditLog(accounts.engine, clock=clock)
        self._client_cache: dict[str, tuple[float, Client | None]] = {}
        # Authorization header -> (when its client was read, the client it authenticated).
        self._verified: dict[str, tuple[float, Client]] = {}
        # (requested scope, the client's scopes) -> the granted scopes (client_credentials).
        self._granted: dict[tuple[str | None, frozenset[str]], frozenset[str]] = {}
        self._token_ids = TokenIds()
        self.monotonic: Callable[[], float] = time.monotonic  # the client caches' clock
        # The key ring's current signer, looked up when each batch is signed.
        self.signatures = BatchSigner(lambda: self.keyring.signer())

    def close(self) -> None:
        self.password_pool.close()

    # -- clients ----------------------------------------------------------------------------

    def lookup_client_cached(self, client_id: str) -> Client | None:
        """Each client is read at most every couple of seconds (the client_credentials hot path)."""
        now = self.monotonic()
        hit = self._client_cache.get(client_id)
        if hit is not None and now - hit[0] < CLIENT_CACHE_SECONDS:
            return hit[1]
        client = self.accounts.get_client(client_id)
        if len(self._client_cache) > 10_000:
            self._client_cache.clear()
        self._client_cache[client_id] = (now, client)
        return client

    def authenticate(self, form: dict[str, str], authorization: str | None) -> Client:
        """Inline on the event loop: a cache hit costs a dict lookup and one SHA-256; a miss is
        one indexed read, at most every CLIENT_CACHE_SECONDS per client.

        A machine client sends the same ``Authorization`` header with every request: once it
        authenticated a client, the same header names that client without being decoded and
        hashed again for as long as the client's record is cached (so a changed secret or a
        disabled client takes effect within CLIENT_CACHE_SECONDS, as before). Only when the
        body carries no client credentials of its own (a ``client_id`` there must match the
        header's, a ``client_secret`` there is refused), and only successes are remembered.
        """
        if authorization is None or "client_id" in form or "client_secret" in form:
            return authenticate_client(form, authorization, self.lookup_client_cached)
        now = self.monotonic()
        hit = self._verified.get(authorization)
        if hit is not None and now - hit[0] < CLIENT_CACHE_SECONDS:
            return hit[1]
        client = authenticate_client(form, authorization, self.lookup_client_cached)
        read = self._client_cache.get(client.client_id)
        if read is not None and len(authorization) <= MAX_REMEMBERED_HEADER:
            if len(self._verified) >= MEMO_ENTRIES:
                self._verified.clear()
            self._verified[authorization] = (read[0], client)
        return client

    async def authenticate_request(
        self, form: dict[str, str], authorization: str | None, address: str = UNKNOWN_ADDRESS
    ) -> Client:
        """Client authentication with throttling and auditing of failures.

        The success path stays as cheap as :meth:`authenticate` (no database write, no throttle
        read): a correct 256-bit client secret is not something throttling protects. A failure
        looks the client_id and the address up: blocked, the answer is 429 ``slow_down`` instead
        of 401 and nothing more is recorded; not blocked, the failure is counted and audited.
        Unknown client ids and wrong secrets take exactly the same path.
        """
        try:
            return self.authenticate(form, authorization)
        except InvalidClient:
            try:
                presented_id: str | None = client_credentials(form, authorization)[0][:128]
            except (InvalidClient, InvalidRequest):
                presented_id = None  # malformed credentials: count against the address only
            keys = [self.throttle.address(address)]
            if presented_id:
                keys.insert(0, self.throttle.client(presented_id))
            now = self.clock()

            def failed() -> None:
                self._check_blocked(keys, now)
                # The audit names only clients that exist: whatever else was typed stays out.
                known = self.lookup_client_cached(presented_id) if presented_id else None
                self._failed(
                    keys,
                    now,
                    audit.CLIENT_AUTH_FAILED,
                    address=address,
                    client_id=known.client_id if known else None,
                    subject=None,
                    detail=(
                        "wrong client secret or disabled client"
                        if known
                        else "unknown client_id"
                        if presented_id
                        else "missing or malformed client credentials"
                    ),
                )

            await in_thread(failed)
            raise

    def _check_blocked(self, keys: list[ThrottleKey], now: float) -> None:
        block = self.throttle.blocked(keys, now)
        if block is not None:
            raise _slow_down(block)

    def _failed(
        self,
        keys: list[ThrottleKey],
        now: float,
        event: str,
        *,
        address: str,
        client_id: str | None,
        subject: str | None,
        detail: str,
    ) -> None:
        """Count one failure against ``keys`` and audit it (and any block it starts)."""
        self.audit.record(
            event, client_id=client_id, subject=subject, address=address, detail=detail
        )
        for key in self.throttle.record_failure(keys, now):
            self.audit.record(
                audit.THROTTLED,
                client_id=client_id,
                subject=subject,
                address=address,
                detail=(
                    f"{key.kind} reached {key.limit} failures in {self.throttle.window}s; blocked"
                ),
            )

    # -- the endpoint -------------------------------------------------------------------------

    async def token(
        self, form: dict[str, str], authorization: str | None, address: str = UNKNOWN_ADDRESS
    ) -> TokenResponse:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        client = await self.authenticate_request(form, authorization, address)
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType(f"grant type {grant_type[:40]!r} is not supported")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"this client may not use the {grant_type} grant")
        if grant_type != "client_credentials":
            # A malformed scope (RFC 6749 §3.3) is refused before the password check or the
            # refresh transaction; client_credentials parses it straight away anyway.
            parse_scope(form.get("scope"))
        if grant_type == "client_credentials":
            body = await self._client_credentials(form, client)
        elif grant_type == "password":
            body = await self._password(form, client, address)
        else:
            body = await self._refresh(form, client, address)
        return TokenResponse(body=body, grant_type=grant_type)

    async def _client_credentials(self, form: dict[str, str], client: Client) -> dict[str, Any]:
        audience = resolve_audience(form, client.audiences, None)
        requested = form.get("scope")
        key = (requested, client.scopes)
        scopes = self._granted.get(key)
        if scopes is None:  # parsed and checked once per scope string and client scope set
            scopes = resolve_scope(requested, client.scopes)
            if len(self._granted) >= MEMO_ENTRIES:
                self._granted.clear()
            self._granted[key] = scopes
        return await self._response(client.subject, client, audience, scopes, refresh_token=None)

    async def _password(self, form: dict[str, str], client: Client, address: str) -> dict[str, Any]:
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise InvalidRequest("username and password are required")
        audience = resolve_audience(form, client.audiences, None)
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
                    client_id=client.client_id,
                    subject=user.subject if user else None,
                    detail=(
                        "unknown username"
                        if user is None
                        else "login by a disabled user"
                        if user.disabled
                        else "wrong password"
                    ),
                )

            await in_thread(failed)
            raise InvalidGrant("the username or password is incorrect")
        if needs_rehash(user.password_hash):
            await self._rehash(user, password)
        scopes = resolve_scope(form.get("scope"), client.scopes & user.scopes)
        refresh = None
        if "refresh_token" in client.grant_types:
            now = self.clock()
            refresh = await in_thread(
                lambda: self.refresh_tokens.issue(
                    client_id=client.client_id,
                    user_id=user.user_id,
                    scopes=scopes,
                    audience=audience,
                    now=now,
                )
            )
        return await self._response(user.subject, client, audience, scopes, refresh_token=refresh)

    async def _rehash(self, user: User, password: str) -> None:
        """Move a hash made with older parameters to today's, at the login that proves the
        password: until then such an account's check costs a different time than others'."""
        new_hash = await self.password_pool.run(lambda: hash_password(password))
        await in_thread(lambda: self.accounts.replace_password_hash(user, new_hash))

    async def _refresh(self, form: dict[str, str], client: Client, address: str) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise InvalidRequest("refresh_token is required")
        if len(presented) > 256:
            raise InvalidGrant("the refresh token is invalid")

        users: list[User] = []

        def narrow(grant: RefreshGrant, conn: Connection) -> tuple[frozenset[str], str]:
            # Runs inside the redemption's transaction: raising here leaves the token unused.
            user = self.accounts.get_user_by_id(grant.user_id, conn=conn)
            if user is None or user.disabled:
                raise InvalidGrant("the refresh token is invalid, expired or revoked")
            users.append(user)
            # RFC 6749 §6: the scope may narrow, never widen.
            return (
                resolve_scope(form.get("scope"), grant.scopes),
                resolve_audience(form, client.audiences, grant.audience),
            )

        now = self.clock()
        redemption = await in_thread(
            lambda: self.refresh_tokens.rotate(
                presented, client_id=client.client_id, now=now, narrow=narrow
            )
        )
        if redemption.status in ("reused", "wrong_client") and redemption.grant is not None:
            grant = redemption.grant
            reused = redemption.status == "reused"
            await in_thread(
                lambda: self.audit.record(
                    audit.REFRESH_REUSE if reused else audit.REFRESH_WRONG_CLIENT,
                    client_id=client.client_id,
                    subject=f"user:{grant.user_id}",
                    address=address,
                    detail=(
                        f"superseded refresh token presented; family {grant.family_id} revoked"
                        if reused
                        else f"refresh token of client {grant.client_id} presented; refused"
                    ),
                )
            )
        if redemption.status != "ok" or not users:
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        return await self._response(
            users[0].subject,
            client,
            redemption.audience,
            redemption.scopes,
            refresh_token=redemption.token,
        )

    async def _response(
        self,
        subject: str,
        client: Client,
        audience: str,
        scopes: frozenset[str],
        *,
        refresh_token: str | None,
    ) -> dict[str, Any]:
        ttl = self.settings.access_token_ttl
        claims = access_token_claims(
            issuer=self.settings.issuer_url,
            subject=subject,
            audience=audience,
            client_id=client.client_id,
            scopes=scopes,
            now=self.clock(),
            ttl=ttl,
            jti=self._token_ids.next(),
        )
        body: dict[str, Any] = {
            # Signed with the other tokens of this event-loop turn (issuer/batch_signer.py).
            "access_token": await self.signatures.sign(claims),
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": claims["scope"],
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body


def _slow_down(block: Block) -> SlowDown:
    return SlowDown(
        "too many failed attempts; try again later",
        headers={"Retry-After": str(block.retry_after)},
    )
