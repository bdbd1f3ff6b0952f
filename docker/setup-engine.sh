#!/usr/bin/env bash
# Install Docker Engine and Compose v2 from Debian's packages, start dockerd if it is not
# running, and wait until it answers. Idempotent: safe to run again.
#
#   docker/setup-engine.sh            # as root (or with sudo available)
#
# Environment:
#   DOCKERD_LOG           where dockerd's output goes (default /var/log/keyhouse-dockerd.log)
#   DOCKERD_WAIT_SECONDS  how long to wait for the engine to answer (default 60)
#
# Debian 12 (bookworm) ships docker.io 20.10 but only Compose v1 (docker-compose 1.29, Python).
# Compose v2 (the `docker compose` CLI plugin) is Debian's `docker-compose` package from
# Debian 13 (trixie) on; it is a static Go binary that only needs libc6 >= 2.34, so on bookworm
# we fetch that single .deb from the trixie suite with a private apt configuration (the system's
# sources are left untouched) and install it with dpkg.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/keyhouse-dockerd.log}
WAIT=${DOCKERD_WAIT_SECONDS:-60}
COMPOSE_SUITE=${COMPOSE_SUITE:-trixie}

SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup-engine: $*" >&2; }
die() { echo "setup-engine: error: $*" >&2; exit 1; }

updated=0
apt_update() {
    if [ "$updated" = 0 ]; then
        "${SUDO[@]}" apt-get update -qq
        updated=1
    fi
}

# --- Docker Engine -----------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io from Debian"
    apt_update
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        docker.io iptables ca-certificates >/dev/null
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"

# --- Compose v2 --------------------------------------------------------------------------
compose_major() {
    # prints the major version of `docker compose`, or nothing
    docker compose version --short 2>/dev/null | sed -E 's/^v?([0-9]+).*/\1/' | head -n1
}

if [ "$(compose_major)" -lt 2 ] 2>/dev/null || [ -z "$(compose_major)" ]; then
    apt_update
    candidate=$(apt-cache policy docker-compose 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ "$candidate" =~ ^(1:)?[2-9] ]]; then
        log "installing docker-compose $candidate from Debian"
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
    else
        log "Debian's docker-compose here is '${candidate:-none}' (v1); fetching v2 from Debian $COMPOSE_SUITE"
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
        cat >"$tmp/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $COMPOSE_SUITE main
SOURCES
        apt_opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
                  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
                  -o "APT::Sandbox::User=root")
        "${SUDO[@]}" apt-get "${apt_opts[@]}" update -qq
        (cd "$tmp" && "${SUDO[@]}" apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
        "${SUDO[@]}" dpkg -i "$tmp"/docker-compose_*.deb >/dev/null
    fi
fi
[ "$(compose_major)" -ge 2 ] 2>/dev/null || die "docker compose v2 is not available (got: $(docker compose version 2>&1 | head -n1))"

# --- dockerd -----------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $LOG)"
    "${SUDO[@]}" mkdir -p "$(dirname "$LOG")"
    # A machine that was stopped with dockerd running leaves its pid file behind, and dockerd
    # refuses to start while it exists: drop it when no such process is alive.
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
            log "removing stale $pidfile"
            "${SUDO[@]}" rm -f "$pidfile"
        fi
    done
    # setsid + nohup: the daemon outlives this script and the shell that ran it.
    "${SUDO[@]}" setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
    deadline=$((SECONDS + WAIT))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$LOG" >&2 || true
            die "dockerd did not answer within ${WAIT}s (see $LOG)"
        fi
        sleep 1
    done
fi

log "ready: $(docker version --format 'engine {{.Server.Version}}' 2>/dev/null), compose $(docker compose version --short)"
