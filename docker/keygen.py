"""The compose stack's one-shot `keygen` service: the secrets the stack needs, made once.

- ``/var/lib/keyhouse/secret/issuer_secret_key`` (volume ``issuer-secret``, mode 0600, owned by
  the issuer's user): the key-encryption secret that seals the signing keys in the database.
  ``ISSUER_SECRET_KEY`` brings your own on the first start.
- ``/var/lib/keyhouse/db-password/postgres_password`` (volume ``db-password``, mode 0444: the
  PostgreSQL server reads it under its own uid): the database password, read by PostgreSQL when
  it initialises its data volume (``POSTGRES_PASSWORD_FILE``) and by the issuers
  (``ISSUER_DATABASE_PASSWORD_FILE``). ``POSTGRES_PASSWORD`` brings your own on the first start.

An existing file is kept: a new secret could not open the stored keys, a new password would not
match the initialised database. A given value that differs from the stored one is refused.
Prints what it did, never a secret. Runs in the keyhouse image: standard library only.
"""

from __future__ import annotations

import os
import secrets
import sys

SECRET_KEY = "/var/lib/keyhouse/secret/issuer_secret_key"
DB_PASSWORD = "/var/lib/keyhouse/db-password/postgres_password"


def ensure(
    path: str, given: str, generated: str, end: str, mode: int, what: str, variable: str
) -> None:
    if os.path.exists(path):
        with open(path) as handle:
            stored = handle.read().strip()
        if given and stored != given:
            sys.exit(f"keygen: {variable} differs from the {what} in the volume; refusing")
        print(f"keygen: keeping the existing {what}")
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, ((given or generated) + end).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, mode)
    print(f"keygen: wrote the {what} to {path}", "(given)" if given else "(generated)")


def main() -> None:
    os.umask(0o077)
    ensure(
        SECRET_KEY,
        os.environ.get("ISSUER_SECRET_KEY", "").strip(),
        secrets.token_urlsafe(48),
        "\n",
        0o600,
        "issuer secret key",
        "ISSUER_SECRET_KEY",
    )
    ensure(
        DB_PASSWORD,
        os.environ.get("POSTGRES_PASSWORD", "").strip(),
        secrets.token_hex(24),
        "",
        0o444,
        "database password",
        "POSTGRES_PASSWORD",
    )


if __name__ == "__main__":
    main()
