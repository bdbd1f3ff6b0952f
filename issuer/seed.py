"""The demo client and user that ``./scripts/up`` and the compose init service create."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import update

from issuer.accounts import AccountStore, hash_secret
from issuer.db import clients, users
from issuer.passwords import hash_password
from shared.scopes import parse_scope

DEMO_CLIENT_ID = "demo-client"
DEMO_USERNAME = "demo"
DEMO_SCOPES = "photos:read photos:write contacts:read contacts:write"
DEMO_AUDIENCES = ["photos", "contacts"]
DEMO_GRANTS = ["client_credentials", "password", "refresh_token"]


def seed_demo(accounts: AccountStore, credentials_file: Path, now: float) -> dict[str, Any]:
    """Create the demo client and user once; afterwards return the saved credentials.

    If the database has them but the credentials file is gone, fresh secrets are set, since
    stored secrets are hashes and cannot be shown again.
    """
    saved = _read(credentials_file)
    client = accounts.get_client(DEMO_CLIENT_ID)
    user = accounts.get_user(DEMO_USERNAME)
    if saved and client is not None and user is not None:
        return {**saved, "created": False}
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
    return {**creds, "created": True}


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle, indent=2)
        handle.write("\n")
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
