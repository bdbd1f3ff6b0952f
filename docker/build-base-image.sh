#!/usr/bin/env bash
# Build a minimal Debian bookworm root file system with python3 (+ venv, pip) and
# ca-certificates using mmdebstrap, and `docker import` it as a local base image.
# Used where no container registry is reachable (CI): the Dockerfile then builds with
#   --build-arg BASE_IMAGE=keyhouse-base:bookworm
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds it).
#
#   docker/build-base-image.sh [IMAGE]      # default keyhouse-base:bookworm
#
# Needs root (mmdebstrap in root mode) and a running Docker engine.
set -euo pipefail

IMAGE=${1:-${KEYHOUSE_BASE_IMAGE:-keyhouse-base:bookworm}}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Extra CA certificates that this machine trusts (e.g. a TLS-inspecting egress proxy's CA) are
# copied into the image, so pip and apt inside builds on this base reach the package indexes
# the same way the host does. Public certificates only; set EXTRA_CA_DIR= to skip.
EXTRA_CA_DIR=${EXTRA_CA_DIR-/usr/local/share/ca-certificates}

log() { echo "build-base-image: $*" >&2; }
die() { echo "build-base-image: error: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (run docker/setup-engine.sh first)"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists, nothing to do (FORCE=1 rebuilds)"
    exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
    log "installing mmdebstrap from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ca_hooks=()
if [ -n "$EXTRA_CA_DIR" ] && compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
    mkdir -p "$work/ca"
    cp "$EXTRA_CA_DIR"/*.crt "$work/ca/"
    log "adding the host's extra CA certificates: $(cd "$work/ca" && echo *.crt)"
    ca_hooks=(--customize-hook="cp '$work'/ca/*.crt \"\$1\"/usr/local/share/ca-certificates/ && chroot \"\$1\" update-ca-certificates >/dev/null")
fi

log "bootstrapping Debian $SUITE (minbase + python3) ..."
# Root mode: we are root here; no user namespaces needed. Docs, man pages and locales are left
# out and the apt lists dropped afterwards to keep the image small (Dockerfiles run
# `apt-get update` themselves).
mmdebstrap \
    --mode=root \
    --variant=minbase \
    --format=tar \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "${ca_hooks[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$SUITE" "$work/rootfs.tar" \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" \
    >"$work/mmdebstrap.log" 2>&1 || { tail -n 40 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }

log "importing as $IMAGE"
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian $SUITE minbase + python3 (mmdebstrap)" \
    "$work/rootfs.tar" "$IMAGE" >/dev/null

docker run --rm --network none "$IMAGE" python3 -c 'import venv, ensurepip, ssl; print("base ok")' >/dev/null \
    || die "$IMAGE was imported but python3 with venv/ensurepip does not work in it"
log "done: $(docker image inspect --format '{{.Id}} {{.Size}}' "$IMAGE")"
