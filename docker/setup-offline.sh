#!/usr/bin/env bash
# Set up this checkout for the compose stack on a machine with no container registry, once:
#   1. the local base image keyhouse-base:bookworm (docker/build-base-image.sh; skipped when it
#      exists), on which compose.ci.yaml builds every image (keyhouse, HAProxy, PostgreSQL);
#   2. COMPOSE_FILE=compose.yaml:compose.ci.yaml in ./.env (git- and docker-ignored; other lines
#      are kept), so that every later plain `docker compose ...` in this folder uses the override.
# Afterwards: docker compose up --build  (and every other compose command, without -f flags).
# Idempotent. Undo with: sed -i '/^COMPOSE_FILE=/d' .env
#
#   docker/setup-offline.sh      # needs a running Docker engine (docker/setup-engine.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
env_file="$root/.env"
line="COMPOSE_FILE=compose.yaml:compose.ci.yaml"

bash "$root/docker/build-base-image.sh"

if [ -f "$env_file" ] && grep -qx "$line" "$env_file"; then
    echo "setup-offline: $env_file already has $line" >&2
    exit 0
fi
tmp=$(mktemp "$root/.env.XXXXXX")
trap 'rm -f "$tmp"' EXIT
if [ -f "$env_file" ]; then
    grep -v '^COMPOSE_FILE=' "$env_file" >"$tmp" || true
fi
printf '# Written by docker/setup-offline.sh: no registry here, build every image locally.\n%s\n' \
    "$line" >>"$tmp"
chmod 0600 "$tmp"
mv "$tmp" "$env_file"
trap - EXIT
echo "setup-offline: wrote $line to $env_file; plain \`docker compose ...\` now uses it" >&2
