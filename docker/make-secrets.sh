#!/usr/bin/env bash
# Optional: `docker compose up --build` works without this script. Run it once, before the first
# `up`, to replace the development PostgreSQL password with a random one:
#   writes ./.env (next to compose.yaml, mode 0600; git- and docker-ignored) with
#   POSTGRES_PASSWORD=<random, URL-safe>. Compose reads ./.env for ${...} interpolation, so every
#   later `docker compose ...` in this folder uses it without extra flags.
# The issuer's key-encryption secret is not handled here: the `keygen` service generates it into
# the `issuer-secret` volume on first start (or takes ISSUER_SECRET_KEY from the environment).
# An existing .env that already sets POSTGRES_PASSWORD is kept: PostgreSQL only reads the password
# when its data volume is first initialised, so changing it later locks the issuer out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
env_file="$root/.env"

if [ -f "$env_file" ] && grep -q '^POSTGRES_PASSWORD=' "$env_file"; then
    echo "make-secrets: $env_file already sets POSTGRES_PASSWORD; kept" >&2
    exit 0
fi
pw=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
(umask 077; printf '# Written by docker/make-secrets.sh: read by docker compose in this folder.\nPOSTGRES_PASSWORD=%s\n' "$pw" >>"$env_file")
chmod 0600 "$env_file"
echo "make-secrets: wrote POSTGRES_PASSWORD to $env_file" >&2
