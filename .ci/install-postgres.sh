#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the test suite. No service is started: the
# tests start their own throwaway server (tests/support/postgres.py). Idempotent.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v runuser >/dev/null; then
    echo "install-postgres: already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
# Don't let the package create (and try to start) a default cluster; we never use it.
"${SUDO[@]}" mkdir -p /etc/postgresql-common
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql postgresql-client util-linux >/dev/null
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')" >&2
