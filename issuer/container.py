"""The issuer's container: everything its endpoints use, built once per process and closed once.

:func:`build_issuer` opens the store and the key ring and wires the services; the app's lifespan
(``issuer/app.py``) builds it, hands it to the endpoints as lifespan state, runs
:func:`reload_keys_forever` beside them and closes it with :func:`close_issuer`. The CLI builds
one too, to serve nothing but its commands. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio.to_thread
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Engine

from issuer.accounts import AccountStore
from issuer.codes import CodeStore
from issuer.consents import ConsentStore
from issuer.db import init_schema
from issuer.engines import make_engine, make_probe_engine
from issuer.events import SecurityEvents, security_events
from issuer.events.broadcaster import Broadcaster
from issuer.introspection import Introspector
from issuer.keys import KeyAdmin, KeyRing, open_key_repository
from issuer.keys.sealing import find_secret
from issuer.metrics import IssuerMetrics
from issuer.outage import DatabaseOutage, unavailability
from issuer.readiness import Readiness, select_one
from issuer.refresh import RefreshTokenStore
from issuer.revoked import RevokedAccessTokens
from issuer.sessions import SessionStore
from issuer.settings import IssuerSettings
from issuer.token_service import TokenService
from issuer.user_admin import UserAdmin
from shared.clock import Clock, system_clock
from shared.dpop import DPoPSettings, DPoPVerifier
from shared.errors import ConfigurationError
from shared.jws import b64url_encode
from shared.protocol import ADMIN_AUDIENCE
from shared.tokens import TokenVerifier

logger = logging.getLogger("keyhouse.issuer")


@dataclass
class Issuer:
    """Everything the endpoints need; built and torn down by the app's lifespan."""

    settings: IssuerSettings
    keyring: KeyRing
    tokens: TokenService
    introspector: Introspector
    admin: KeyAdmin
    admin_verifier: TokenVerifier
    metrics: IssuerMetrics
    outage: DatabaseOutage  # is the database down? (logged once per outage)
    readiness: Readiness  # /readyz
    probe_engine: Engine  # the readiness probe's one connection
    sessions: SessionStore  # people signed in on the login page
    consents: ConsentStore
    codes: CodeStore  # authorization codes
    revoked: RevokedAccessTokens  # access tokens revoked before their exp
    sign_in_key: bytes  # HMAC key of the sign-in tickets and CSRF tokens (see sign_in_key())
    events: SecurityEvents  # revocations recorded for the resource services (issue 17)
    broadcaster: Broadcaster  # GET /events: the poller and the open streams
    users: UserAdmin  # disable/enable users (admin API; the CLI has its own)


def sign_in_key(secret: str) -> bytes:
    """The sign-in pages' HMAC key, derived from the key-encryption secret (ISSUER_SECRET_KEY
    or its file) with HKDF-SHA256 under its own label, so it is the same on every replica and
    unrelated to the key that seals the signing keys."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyhouse sign-in v1"
    ).derive(secret.encode())


def _secret(settings: IssuerSettings) -> str:
    """The secret the key repository was just opened with (it exists by now)."""
    secret = find_secret(
        settings.secret_key, settings.secret_key_file, settings.default_secret_key_file.absolute()
    )
    if secret is None:  # pragma: no cover - open_key_repository found or made it
        raise ConfigurationError("no key-encryption secret for the sign-in key")
    return secret


def dpop_nonce_key(secret: str) -> bytes:
    """The DPoP nonces' HMAC key: like :func:`sign_in_key`, under its own label."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyhouse dpop nonce v1"
    ).derive(secret.encode())


DPOP_NONCE_SLOT = 60  # seconds; a nonce is good in its slot and the next one (60 to 120 s)


class DPoPNonces:
    """Server-provided DPoP nonces (RFC 9449 §8), stateless: a nonce is the HMAC of the current
    time slot under a key derived from the issuer's secret, so every replica makes and accepts
    the same ones with nothing stored or shared. A proof's nonce passes when it is the current
    slot's or the previous slot's; otherwise (or none) the current one is demanded
    (``use_dpop_nonce`` with ``DPoP-Nonce``). The verifier's nonce policy."""

    def __init__(self, key: bytes, *, clock: Clock, slot: int = DPOP_NONCE_SLOT) -> None:
        self._key = key
        self._clock = clock
        self._slot = slot

    def _nonce(self, slot: int) -> str:
        digest = hmac.new(self._key, b"dpop nonce %d" % slot, hashlib.sha256).digest()
        return b64url_encode(digest[:18])  # 144 bits, 24 characters, all NQCHAR

    def current(self) -> str:
        return self._nonce(int(self._clock() // self._slot))

    def __call__(self, presented: str | None) -> str | None:
        slot = int(self._clock() // self._slot)
        current = self._nonce(slot)
        if presented is not None:
            given = presented.encode("utf-8", "surrogatepass")
            for accepted in (current, self._nonce(slot - 1)):
                if hmac.compare_digest(given, accepted.encode()):
                    return None
        return current


def dpop_verifier(settings: IssuerSettings, clock: Clock, secret: str) -> DPoPVerifier:
    """The process's one DPoP proof verifier for /token, with server nonces when
    ISSUER_DPOP_NONCE=1. Its replay cache is per process: a proof replayed to another replica
    within the window is not caught there (RFC 9449 §11.1); nonces narrow that window."""
    nonces = DPoPNonces(dpop_nonce_key(secret), clock=clock) if settings.dpop_nonce else None
    return DPoPVerifier(
        DPoPSettings(algorithms=settings.dpop_algs),
        clock=clock,
        nonce_policy=nonces,
        status_code=400,
    )


def build_issuer(settings: IssuerSettings, *, clock: Clock = system_clock) -> Issuer:
    """Open the store (creating the schema and a first key if need be) and wire the services.

    Blocking (database work and key unsealing): call it off the event loop.
    """
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    init_schema(engine)
    repo = open_key_repository(settings, engine, clock())
    keyring = KeyRing(repo, jwks_max_age=settings.jwks_max_age, clock=clock)
    keyring.reload()
    accounts = AccountStore(engine)
    events = security_events(engine, settings, clock=clock)
    refresh = RefreshTokenStore(
        engine,
        ttl=settings.refresh_token_ttl,
        idle_ttl=settings.refresh_token_idle_ttl,
        events=events,
    )
    revoked = RevokedAccessTokens(engine, clock=clock)
    sessions = SessionStore(engine, idle_ttl=settings.session_idle_ttl, ttl=settings.session_ttl)
    codes = CodeStore(engine, ttl=settings.code_ttl, revoked=revoked, events=events)
    metrics = IssuerMetrics()
    secret = _secret(settings)
    tokens = TokenService(
        settings,
        keyring,
        accounts,
        refresh,
        clock=clock,
        codes=codes,
        dpop=dpop_verifier(settings, clock, secret),
    )
    outage = DatabaseOutage(retry_after=settings.retry_after)
    probe_engine = make_probe_engine(settings.database_url)
    return Issuer(
        settings=settings,
        keyring=keyring,
        tokens=tokens,
        introspector=Introspector(
            settings, keyring, refresh, clock=clock, revoked=revoked, events=events
        ),
        admin=KeyAdmin(repo, clock=clock, events=events),
        admin_verifier=TokenVerifier(
            issuer=settings.issuer_url, audience=ADMIN_AUDIENCE, clock=clock
        ),
        metrics=metrics,
        outage=outage,
        readiness=Readiness(select_one(probe_engine), lambda: keyring.signer().kid, outage),
        probe_engine=probe_engine,
        sessions=sessions,
        consents=ConsentStore(engine),
        codes=codes,
        revoked=revoked,
        sign_in_key=sign_in_key(secret),
        events=events,
        broadcaster=Broadcaster(
            events.store,
            keyring,
            metrics,
            max_subscribers=settings.events_max_subscribers,
            heartbeat=settings.events_heartbeat,
            poll_interval=settings.events_poll_interval,
            outage=outage,
        ),
        users=UserAdmin(accounts, events=events, clock=clock),
    )


def close_issuer(issuer: Issuer) -> None:
    """Stop the token service's workers and close the store's connections (blocking)."""
    issuer.tokens.close()
    issuer.keyring.repo.engine.dispose()
    issuer.probe_engine.dispose()


async def reload_keys_forever(
    issuer: Issuer, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Pick up keys rotated or revoked by another process (the CLI, another replica), and run
    the rotation scheduler: whichever process notices that the signing key has no successor
    schedules one (the database makes sure only one is created). Runs until cancelled; a
    failure is logged (message and traceback) and the next tick tries again. A database outage
    is no such failure: it goes to ``issuer.outage`` (one warning per outage, one info line when
    a reload succeeds again), and the keys in memory keep serving meanwhile."""
    while True:
        await sleep(issuer.settings.key_refresh_interval)
        try:
            created = await anyio.to_thread.run_sync(issuer.admin.tick)
            if created is not None:
                logger.info(
                    "scheduled signing key %s: published at %s, signs from %s",
                    created["kid"],
                    created["publish_at"],
                    created["activate_at"],
                )
        except Exception as exc:  # keep serving; the next tick (or another replica) retries
            if _outage(issuer, exc):
                continue  # the reload would meet the same outage
            logger.warning("key rotation scheduler failed", exc_info=True)
        try:
            await anyio.to_thread.run_sync(issuer.keyring.reload)
        except Exception as exc:  # keep serving with the keys we have
            if not _outage(issuer, exc):
                logger.warning("reloading signing keys failed", exc_info=True)
        else:
            issuer.outage.succeeded()


def _outage(issuer: Issuer, exc: Exception) -> bool:
    """Record ``exc`` as a database outage if it is one (logged once per outage)."""
    reason = unavailability(exc)
    if reason is not None:
        issuer.outage.failed(reason)
    return reason is not None
