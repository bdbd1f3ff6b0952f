"""DPoP proofs for a wrk load, and the verdict on a run of them (pure: no process, no I/O but
the proofs file).

wrk's Lua cannot sign, so every proof of a run is made here beforehand (ES256, RFC 9449 §4.2:
``typ`` ``dpop+jwt``, the public ``jwk``, a unique ``jti``, ``htm``, ``htu``, ``iat`` and ``ath``,
the hash of the access token) and written one a line; bench/wrk/dpop.lua sends each at most
once (thread i of n takes lines i, i+n, ...) and prints a ``BENCH_DPOP {...}`` line of its
counters. A proof is accepted once (the resource service's replay cache refuses it after), so a
run is valid only if every answer was 2xx and no thread ran out of proofs: a proof sent twice,
or the placeholder sent when none is left, is answered 401 and fails the run (never counted as
throughput, never tolerated as a 1% of errors). ``iat`` is the time the proofs were made, and a
proof older than the service's window (shared.dpop.DPoPSettings.max_age, 60 s) is refused: the
proofs of a run are made just before it, and a run must end within ``MAX_RUN_SECONDS``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bench.harness.config import BenchError
from shared.dpop import DPoPSettings, access_token_hash, thumbprint
from shared.jws import b64url_encode

# The proofs of a run are dated when they are made; the service accepts them for max_age
# seconds. Making them, the warm-up and the run must fit in that window with a margin.
MAX_RUN_SECONDS = int(DPoPSettings().max_age) - 15
# How many proofs a run gets: its expected requests times this, plus PROOF_SLACK.
PROOF_FACTOR = 1.5
PROOF_SLACK = 500
NO_PROOF_LEFT = "bench-no-proof-left"  # what dpop.lua sends when a thread ran out (answered 401)


def _coordinate(value: int) -> str:
    return b64url_encode(value.to_bytes(32, "big"))


class ProofKey:
    """An ES256 (P-256) key that signs proofs; ``jkt`` is what a token bound to it carries."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._key = key or ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        self.jwk: dict[str, str] = {
            "kty": "EC",
            "crv": "P-256",
            "x": _coordinate(numbers.x),
            "y": _coordinate(numbers.y),
        }
        self.jkt = thumbprint(self.jwk)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        self._header = b64url_encode(json.dumps(header, separators=(",", ":")).encode())

    def proof(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` with this key (R || S, RFC 7518 §3.4)."""
        payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}"
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64url_encode(signature)}"


def make_proofs(
    key: ProofKey,
    *,
    method: str,
    url: str,
    count: int,
    iat: int,
    access_token: str | None = None,
) -> Iterator[str]:
    """``count`` proofs for ``method`` ``url``, each with a ``jti`` of its own (a random run
    prefix and a counter: unique within the run and across runs), dated ``iat``; with
    ``access_token``, each carries its ``ath``."""
    run = uuid.uuid4().hex
    claims: dict[str, Any] = {"htm": method, "htu": url, "iat": iat}
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    for i in range(count):
        yield key.proof({"jti": f"{run}-{i}", **claims})


def proofs_needed(expected_rps: float, seconds: float) -> int:
    """Proofs for a run of ``seconds`` at about ``expected_rps`` (with room to spare: a run that
    runs out fails)."""
    return int(expected_rps * seconds * PROOF_FACTOR) + PROOF_SLACK


def write_proofs(path: Path, proofs: Iterator[str]) -> int:
    """One proof a line; how many were written."""
    n = 0
    with path.open("w") as out:
        for proof in proofs:
            out.write(proof + "\n")
            n += 1
    return n


@dataclass(frozen=True)
class ProofStats:
    """dpop.lua's counters, summed over its threads."""

    sent: int  # requests built with a proof of the file
    starved: int  # requests built with none left (NO_PROOF_LEFT: answered 401)


def parse_proof_stats(output: str) -> ProofStats:
    """The BENCH_DPOP line dpop.lua prints at the end of a run."""
    m = re.search(r"^BENCH_DPOP (\{.*\})$", output, re.MULTILINE)
    if not m:
        raise BenchError("wrk (dpop.lua) printed no BENCH_DPOP line:\n" + output[-2000:])
    data = json.loads(m.group(1))
    try:
        return ProofStats(**{f.name: int(data[f.name]) for f in fields(ProofStats)})
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"BENCH_DPOP line without the expected counters: {m.group(1)}") from exc


def check_proof_run(
    what: str, *, requests: int, non_2xx: int, socket_errors: int, stats: ProofStats, made: int
) -> None:
    """BenchError unless every request of the run was answered 2xx with a proof sent once:
    a refused (for example replayed) proof is a failure, not a request to count or tolerate."""
    if requests == 0:
        raise BenchError(f"wrk ({what}) completed no request")
    if stats.starved:
        raise BenchError(
            f"wrk ({what}) ran out of proofs: {stats.starved} requests had none ({made} were"
            " made for the run); the numbers would count refusals"
        )
    if stats.sent > made:
        raise BenchError(f"wrk ({what}) sent {stats.sent} proofs but only {made} were made")
    if non_2xx or socket_errors:
        raise BenchError(
            f"wrk ({what}): {non_2xx} non-2xx answers and {socket_errors} socket errors in"
            f" {requests} requests; every proof must be accepted once (a replayed or stale"
            " proof is refused with 401)"
        )
