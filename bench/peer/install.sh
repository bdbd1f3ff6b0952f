#!/usr/bin/env bash
# Install the node-oidc-provider peer of the benchmarks from npm into bench/.peer/ (gitignored),
# when it is missing or bench/peer/package.json changed; then copy its scripts there. Called by
# ./scripts/bench and by .ci/run (CI requires the peer: tests/bench/test_bench_smoke.py checks the
# report's node and oidc-provider versions). Exits 1 with one line when node/npm is missing or
# npm fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "bench: node/npm not found; the node-oidc-provider peer is not installed" >&2
  exit 1
fi
mkdir -p bench/.peer
if [ ! -f bench/.peer/node_modules/oidc-provider/package.json ] \
   || ! cmp -s bench/peer/package.json bench/.peer/package.json; then
  echo "bench: installing the node-oidc-provider peer (npm) into bench/.peer" >&2
  cp bench/peer/package.json bench/.peer/package.json
  if ! (cd bench/.peer && npm install --no-audit --no-fund --omit=dev --loglevel=error >/dev/null); then
    echo "bench: npm install of the peer failed" >&2
    exit 1
  fi
fi
cp bench/peer/server.js bench/peer/sign_ceiling.js bench/.peer/
