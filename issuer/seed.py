"""The demo clients and user that ``./scripts/up`` and the compose init service create.

``demo-client`` is the confidential client of the walkthrough (client_credentials, password,
refresh_token). ``demo-webapp`` is the web app's: confidential, first-party (no consent page),
authorization_code and refresh_token, one redirect URI (``WEBAPP_URL/callback``) and one
post-logout redirect URI (``WEBAPP_URL/signed-out``); its secret is kept in a file of its own
beside the credentials file (``webapp-client-secret``, mode 0600), which the web app reads
(``WEBAPP_CLIENT_SECRET_FILE``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import update

from issuer.accounts import AccountStore, hash_secret, redirect_uri_problem
from issuer.db import clients, users
from issuer.passwords import hash_password
from shared.errors import ConfigurationError
from shared.scopes import format_scope, parse_scope

DEMO_CLIENT_ID = "demo-client"
DEMO_USERNAME = "demo"
DEMO_SCOPES = "photos:read photos:write contacts:read contacts:write"
DEMO_AUDIENCES = ["photos", "contacts"]
DEMO_GRANTS = ["client_credentials", "password", "refresh_token"]

WEBAPP_CLIENT_ID = "demo-webapp"
WEBAPP_SCOPES = "openid profile photos:read photos:write contacts:read contacts:write"
WEBAPP_GRANTS = ["authorization_code", "refresh_token"]
WEBAPP_SECRET_FILE = "webapp-client-secret"  # beside the credentials file
DEFAULT_WEBAPP_URL = "http://127.0.0.1:8003"


def seed_demo(
    accounts: AccountStore,
    credentials_file: Path,
    now: float,
    *,
    webapp_url: str = DEFAULT_WEBAPP_URL,
) -> dict[str, Any]:
    """Create the demo clients and user once; afterwards return the saved credentials.

    If the database has them but the credentials file is gone, fresh secrets are set, since
    stored secrets are hashes and cannot be shown again. The web app's client is kept in step
    with ``webapp_url`` (its redirect URIs follow a moved port).
    """
    webapp = seed_webapp_client(
        accounts, credentials_file.parent / WEBAPP_SECRET_FILE, webapp_url, now
    )
    saved = _read(credentials_file)
    client = accounts.get_client(DEMO_CLIENT_ID)
    user = accounts.get_user(DEMO_USERNAME)
    if saved and client is not None and user is not None:
        return {**saved, **webapp, "created": False}
    creds = {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": secrets.token_urlsafe(32),
        "username": DEMO_USERNAME,
        "password": secrets.token_urlsafe(12),
    }
    if client is None:
        accounts.create_client(
            name="Demo client",
            scopes=parse_scope(DEMO_SCOPES),
            audiences=DEMO_AUDIENCES,
            grant_types=DEMO_GRANTS,
            now=now,
            client_id=DEMO_CLIENT_ID,
            client_secret=creds["client_secret"],
        )
    else:
        with accounts.engine.begin() as conn:
            conn.execute(
                update(clients)
                .where(clients.c.client_id == DEMO_CLIENT_ID)
                .values(secret_hash=hash_secret(creds["client_secret"]))
            )
    if user is None:
        accounts.create_user(
            username=DEMO_USERNAME,
            password=creds["password"],
            scopes=parse_scope(DEMO_SCOPES),
            now=now,
        )
    else:
        with accounts.engine.begin() as conn:
            conn.execute(
                update(users)
                .where(users.c.username == DEMO_USERNAME)
                .values(password_hash=hash_password(creds["password"]))
            )
    _write(credentials_file, creds)
    return {**creds, **webapp, "created": True}


def webapp_redirect_uris(webapp_url: str) -> tuple[str, str]:
    """The web app's redirect URI and post-logout redirect URI for its base URL."""
    base = webapp_url.rstrip("/")
    uris = (base + "/callback", base + "/signed-out")
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise ConfigurationError(f"--webapp-url {webapp_url[:100]!r}: {uri!r} {problem}")
    return uris


def seed_webapp_client(
    accounts: AccountStore, secret_file: Path, webapp_url: str, now: float
) -> dict[str, str]:
    """The web app's client: created once with a secret written to ``secret_file`` (0600); a
    missing file gets a fresh secret; scopes and redirect URIs that no longer match are
    replaced."""
    redirect, after_logout = webapp_redirect_uris(webapp_url)
    secret = _read_secret(secret_file)
    client = accounts.get_client(WEBAPP_CLIENT_ID)
    if client is None:
        _, created = accounts.create_client(
            name="Demo web app",
            scopes=parse_scope(WEBAPP_SCOPES),
            audiences=DEMO_AUDIENCES,
            grant_types=WEBAPP_GRANTS,
            now=now,
            client_id=WEBAPP_CLIENT_ID,
            client_secret=secret or secrets.token_urlsafe(32),
            redirect_uris=[redirect],
            post_logout_redirect_uris=[after_logout],
            first_party=True,
        )
        if created != secret:
            _write_text(secret_file, created)
    else:
        values: dict[str, Any] = {}
        if secret is None:
            secret = secrets.token_urlsafe(32)
            values["secret_hash"] = hash_secret(secret)
        if client.scopes != parse_scope(WEBAPP_SCOPES):
            values["scopes"] = format_scope(parse_scope(WEBAPP_SCOPES))
        if client.redirect_uris != (redirect,):
            values["redirect_uris"] = redirect
        if client.post_logout_redirect_uris != (after_logout,):
            values["post_logout_redirect_uris"] = after_logout
        if values:
            with accounts.engine.begin() as conn:
                conn.execute(
                    update(clients).where(clients.c.client_id == WEBAPP_CLIENT_ID).values(**values)
                )
        if "secret_hash" in values:
            _write_text(secret_file, secret)
    return {"webapp_client_id": WEBAPP_CLIENT_ID, "webapp_url": webapp_url.rstrip("/")}


def _read_secret(path: Path) -> str | None:
    try:
        value = path.read_text().removesuffix("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return value if value and value.isascii() and value.isprintable() else None


def _read(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and all(
        isinstance(data.get(k), str) for k in ("client_id", "client_secret", "username", "password")
    ):
        return {k: data[k] for k in ("client_id", "client_secret", "username", "password")}
    return None


def _write(path: Path, creds: dict[str, str]) -> None:
    _write_text(path, json.dumps(creds, indent=2))


def _write_text(path: Path, text: str) -> None:
    """``text`` and a newline into ``path`` (mode 0600), replaced whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.replace(tmp, path)


def walkthrough(creds: dict[str, Any], issuer: str, photos: str, contacts: str) -> str:
    """Copy-paste curl commands that exercise the stack (bash; python3 extracts JSON fields)."""
    cid, secret = creds["client_id"], creds["client_secret"]
    user, password = creds["username"], creds["password"]
    field = "python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])'"
    return f"""\
Demo client: client_id={cid} client_secret={secret}
Demo user:   username={user} password={password}

Walkthrough (paste into bash):

# 1. A token for photos (client_credentials, RFC 6749 §4.4)
TOKEN=$(curl -sf -u {cid}:{secret} -d grant_type=client_credentials -d audience=photos \\
  -d 'scope=photos:read photos:write' {issuer}/token | {field} access_token)
curl -sf -H "Authorization: Bearer $TOKEN" {photos}/whoami; echo

# 2. Create and list photos (items are kept per sub)
curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"title": "beach"}}' {photos}/photos; echo
curl -sf -H "Authorization: Bearer $TOKEN" {photos}/photos; echo

# 3. contacts refuses a token whose audience is photos (401 invalid_token)
curl -s -o /dev/null -w '%{{http_code}}\\n' -H "Authorization: Bearer $TOKEN" {contacts}/whoami

# 4. The user logs in (password grant) and refreshes twice; the first refresh token, spent,
#    is then refused (invalid_grant) and its whole family revoked (reuse detection)
RESP=$(curl -sf -u {cid}:{secret} -d grant_type=password -d username={user} \\
  -d password={password} -d audience=contacts {issuer}/token)
RT=$(echo "$RESP" | {field} refresh_token)
UT=$(echo "$RESP" | {field} access_token)
curl -sf -H "Authorization: Bearer $UT" {contacts}/contacts; echo
RT2=$(curl -sf -u {cid}:{secret} -d grant_type=refresh_token -d refresh_token=$RT \\
  {issuer}/token | {field} refresh_token)
curl -sf -u {cid}:{secret} -d grant_type=refresh_token -d refresh_token=$RT2 {issuer}/token; echo
curl -s -u {cid}:{secret} -d grant_type=refresh_token -d refresh_token=$RT {issuer}/token; echo

# 5. The public keys every resource service verifies with
curl -sf {issuer}/.well-known/jwks.json; echo
"""
