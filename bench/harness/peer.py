"""The peer: node-oidc-provider (bench/peer/server.js), installed by ./scripts/bench into
bench/.peer/, issuing RS256 JWT access tokens for an RFC 8707 resource indicator."""

from __future__ import annotations

import json
import secrets
import shutil
import urllib.parse

from bench.harness.config import PEER_DIR, PEER_SRC, SCOPE, BenchError, Config
from bench.harness.processes import Server
from bench.harness.stack import basic, bench_server, check_rs256, http

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret-" + secrets.token_hex(16)
RESOURCE = "urn:keyhouse:photos"


def installed() -> bool:
    return (PEER_DIR / "node_modules" / "oidc-provider" / "package.json").exists()


def version() -> str:
    pkg = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
    return str(json.loads(pkg.read_text())["version"]) if pkg.exists() else "not installed"


def copy_scripts() -> None:
    """ESM resolves oidc-provider next to the script: run the scripts from bench/.peer/."""
    for f in ("server.js", "sign_ceiling.js"):
        shutil.copy2(PEER_SRC / f, PEER_DIR / f)


def server(cfg: Config) -> Server:
    """The peer on BASE+100 (BenchError when it is not installed)."""
    if not installed():
        raise BenchError(
            "node-oidc-provider peer not installed in bench/.peer (./scripts/bench does it)"
        )
    copy_scripts()
    port = cfg.base_port + 100
    return bench_server(
        cfg,
        "peer-oidc-provider",
        ["node", str(PEER_DIR / "server.js"), "--port", str(port)],
        port=port,
        ready_path="/.well-known/openid-configuration",
        env={
            "NODE_ENV": "production",
            "PEER_CLIENT_ID": CLIENT_ID,
            "PEER_CLIENT_SECRET": CLIENT_SECRET,
            "PEER_RESOURCE": RESOURCE,
        },
    )


def token_form() -> dict[str, str]:
    return {"grant_type": "client_credentials", "resource": RESOURCE, "scope": SCOPE}


def token_env() -> dict[str, str]:
    """bench/wrk/token.lua's knobs for the peer's POST /token."""
    return {
        "BENCH_AUTHORIZATION": basic(CLIENT_ID, CLIENT_SECRET),
        "BENCH_BODY": urllib.parse.urlencode(token_form()),
    }


def check_token(url: str) -> None:
    """One POST /token by hand: 200 and an RS256 JWT."""
    status, _, body = http(
        "POST",
        f"{url}/token",
        form=token_form(),
        headers={"Authorization": basic(CLIENT_ID, CLIENT_SECRET)},
    )
    if status != 200:
        raise BenchError(f"peer POST /token answered {status}: {body[:300]!r}")
    check_rs256(json.loads(body)["access_token"], "peer")
