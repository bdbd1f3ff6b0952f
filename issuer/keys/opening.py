"""Opening a process's key repository: the key-encryption secret found (or, for a new store,
generated) and proven able to open the stored keys, and a signing key made sure of."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from issuer.db import signing_keys
from issuer.keys.record import KeyRecord, signing_record
from issuer.keys.repository import KeyRepository
from issuer.keys.schedule import KeySchedule
from issuer.keys.sealing import KeySealer, find_secret, generate_secret_file
from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError

logger = logging.getLogger("keyhouse.issuer.keys")


@dataclass(frozen=True)
class OpenedKeys:
    """What :func:`prepare_keys` found or made (``issuer init`` reports it)."""

    repo: KeyRepository
    secret_source: str  # "ISSUER_SECRET_KEY", or the file the secret was read from or written to
    generated_secret: bool
    signing: KeyRecord | None  # None only when opened with create=False and no key signs
    created_signing_key: bool


def _stored_key_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(signing_keys)).scalar_one())


def prepare_keys(
    settings: IssuerSettings, engine: Engine, now: float, *, create: bool, announce: bool = True
) -> OpenedKeys:
    """Open the key repository of a process: the secret loaded and proven able to open the
    stored keys.

    ``create`` (``issuer serve`` and ``issuer init`` only): with no secret configured and no
    default secret file, generate that file (0600), unless the database already holds sealed
    keys (a new secret could not open them: refused); and make sure some key signs at ``now``.
    Without ``create`` (every other command) nothing is generated: a missing secret is an error
    and no key is created. ``announce``: log a warning when a secret file was generated.
    """
    default_file = settings.default_secret_key_file.absolute()
    secret = find_secret(settings.secret_key, settings.secret_key_file, default_file)
    source = (
        "ISSUER_SECRET_KEY"
        if settings.secret_key
        else str((settings.secret_key_file or default_file).absolute())
    )
    generated = False
    if secret is None:
        if not create:
            raise ConfigurationError(
                f"no key-encryption secret: ISSUER_SECRET_KEY and ISSUER_SECRET_KEY_FILE are "
                f"unset and {default_file} does not exist (`issuer init` or `issuer serve` "
                "generates it for a new store)"
            )
        if _stored_key_count(engine):
            raise ConfigurationError(
                f"the database holds signing keys but no secret opens them: ISSUER_SECRET_KEY "
                f"and ISSUER_SECRET_KEY_FILE are unset and {default_file} does not exist "
                "(restore it or set the secret the keys were sealed with)"
            )
        secret, generated = generate_secret_file(default_file)
        if generated and announce:
            logger.warning(
                "no ISSUER_SECRET_KEY set: generated %s (0600); back it up, or set "
                "ISSUER_SECRET_KEY",
                default_file,
            )
    repo = KeyRepository(
        engine,
        KeySealer(secret),
        access_token_ttl=settings.access_token_ttl,
        schedule=KeySchedule.from_settings(settings),
    )
    repo.check_secret()
    signing = signing_record(repo.records(), now)
    created = False
    if create and signing is None:
        signing = repo.ensure_signing_key(now)
        created = True
    return OpenedKeys(repo, source, generated, signing, created)


def open_key_repository(
    settings: IssuerSettings, engine: Engine, now: float, *, create: bool = True
) -> KeyRepository:
    """The key repository for a process (see :func:`prepare_keys`); ``create`` is for
    ``issuer serve`` and ``issuer init`` only."""
    return prepare_keys(settings, engine, now, create=create).repo
