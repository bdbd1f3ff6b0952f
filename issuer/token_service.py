"""The token endpoint's protocol logic (RFC 6749 §4.1, §4.3, §4.4, §6; RFC 7636; RFC 8707;
RFC 9068; OpenID Connect Core's token response).

Framework-free: the HTTP layer hands over the parsed form and the ``Authorization`` header and
serialises whatever this returns or raises. Blocking work (database, argon2) runs in a worker
thread so the event loop keeps serving.

:class:`TokenService` holds the state and is put together from parts, one module each (mixins,
so the hot path calls its methods directly, with no object in between):

* ``issuer/token_memos.py``: the client records and verified ``Authorization`` headers it
  remembers between requests;
* ``issuer/failed_attempts.py``: a failed authentication counted, audited and throttled;
* ``issuer/grants.py``: the grants, their scope and audience;
* ``issuer/access_tokens.py``: the token response (claims, ``jti``, signature, ID token).

Here: building it, client authentication with throttling (the token, revocation and
introspection endpoints), and the dispatch of a token request to its grant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from issuer import audit
from issuer.access_tokens import TokenIds
from issuer.accounts import AccountStore, Client
from issuer.audit import AuditLog
from issuer.batch_signer import BatchSigner
from issuer.client_auth import client_credentials
from issuer.codes import CodeStore
from issuer.grants import Grants, in_thread
from issuer.keys import KeyRing
from issuer.passwords import PasswordPool
from issuer.refresh import RefreshTokenStore
from issuer.settings import IssuerSettings
from issuer.throttle import Throttle
from issuer.token_memos import ClientMemos
from shared.clock import Clock, system_clock
from shared.dpop import DPoPSettings, DPoPVerifier, InvalidDPoPProof, one_proof
from shared.errors import InvalidClient, InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from shared.protocol import GRANT_TYPES, TOKEN_PATH
from shared.scopes import parse_scope

UNKNOWN_ADDRESS = "unknown"
# The grants a public client (no secret, token_endpoint_auth_method "none") may use.
PUBLIC_CLIENT_GRANTS = frozenset({"authorization_code", "refresh_token"})


@dataclass(frozen=True)
class TokenResponse:
    body: dict[str, Any]
    grant_type: str


class TokenService(ClientMemos, Grants):
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
        codes: CodeStore | None = None,
        dpop: DPoPVerifier | None = None,
    ) -> None:
        self.settings = settings
        # DPoP proofs at /token (RFC 9449 §5): one verifier, with its replay cache, per process
        # (the container builds it; this default is for tests that build a service alone).
        self.dpop = dpop or DPoPVerifier(
            DPoPSettings(algorithms=settings.dpop_algs), clock=clock, status_code=400
        )
        self._dpop_url = settings.issuer_url + TOKEN_PATH  # htu: the issuer's own public URL
        self.keyring = keyring
        self.accounts = accounts
        self.refresh_tokens = refresh_tokens
        # The authorization codes /authorize issues (the container passes its own store).
        self.codes = codes or CodeStore(accounts.engine, ttl=settings.code_ttl)
        self.clock = clock
        self.password_pool = PasswordPool()
        self.throttle = throttle or Throttle(
            accounts.engine,
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window=settings.login_failure_window,
        )
        self.audit = audit_log or AuditLog(accounts.engine, clock=clock)
        # The memos (issuer/token_memos.py; the scope memo is issuer/grants.py's).
        self._client_cache = {}
        self._verified = {}
        self._granted = {}
        self.monotonic = time.monotonic  # the client caches' clock
        self._token_ids = TokenIds()
        # The key ring's current signer, looked up when each batch is signed.
        self.signatures = BatchSigner(lambda: self.keyring.signer())

    def close(self) -> None:
        self.password_pool.close()

    # -- clients ----------------------------------------------------------------------------

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

    # -- the endpoint -------------------------------------------------------------------------

    def dpop_key(self, proofs: list[str]) -> str:
        """The thumbprint of the key of the one valid DPoP proof among ``proofs`` (the request's
        ``DPoP`` header values); 400 ``invalid_dpop_proof`` (or ``use_dpop_nonce``) else."""
        try:
            proof = one_proof(proofs)
        except InvalidDPoPProof as exc:
            exc.status_code = 400
            raise
        return self.dpop.verify(proof, method="POST", url=self._dpop_url).jkt

    async def token(
        self,
        form: dict[str, str],
        authorization: str | None,
        address: str = UNKNOWN_ADDRESS,
        dpop: list[str] | None = None,
    ) -> TokenResponse:
        """``dpop``: the request's ``DPoP`` header values, None when it has none. With a valid
        proof the access token is bound to its key (and a public client's refresh tokens)."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        client = await self.authenticate_request(form, authorization, address)
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType(f"grant type {grant_type[:40]!r} is not supported")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"this client may not use the {grant_type} grant")
        if client.public and grant_type not in PUBLIC_CLIENT_GRANTS:
            # Registration refuses these already (issuer/accounts.py); a row edited by hand
            # must not turn a client with no secret into a token source.
            raise UnauthorizedClient(f"a public client may not use the {grant_type} grant")
        if grant_type != "client_credentials":
            # A malformed scope (RFC 6749 §3.3) is refused before the password check or the
            # refresh transaction; client_credentials parses it straight away anyway.
            parse_scope(form.get("scope"))
        jkt = None
        if dpop is not None:
            jkt = self.dpop_key(dpop)
        elif client.dpop_bound_access_tokens:
            # RFC 9449 §5.2: such a request "MUST be rejected"; nothing is wrong with a proof
            # (there is none), a required parameter is missing: invalid_request.
            raise InvalidRequest(
                "this client is registered with dpop_bound_access_tokens: every token request "
                "must carry a DPoP proof"
            )
        if grant_type == "client_credentials":
            body = await self._client_credentials(form, client, jkt)
        elif grant_type == "password":
            body = await self._password(form, client, address, jkt)
        elif grant_type == "authorization_code":
            body = await self._authorization_code(form, client, address, jkt)
        else:
            body = await self._refresh(form, client, address, jkt)
        return TokenResponse(body=body, grant_type=grant_type)
