"""bench/harness/dpop_proofs.py: the proofs a DPoP load sends pass the resource service's checks
(shared.dpop's verifier) once each, and a run is refused for any refused or missing proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.config import WRK_DIR, BenchError
from bench.harness.dpop_proofs import (
    MAX_RUN_SECONDS,
    NO_PROOF_LEFT,
    ProofKey,
    ProofStats,
    check_proof_run,
    make_proofs,
    parse_proof_stats,
    proofs_needed,
    write_proofs,
)
from shared.clock import FakeClock
from shared.dpop import DPoPSettings, DPoPVerifier, InvalidDPoPProof, thumbprint

URL = "http://127.0.0.1:18001/whoami"
TOKEN = "header.payload.signature"
IAT = 1_700_000_000


def _verifier(now: float = IAT) -> DPoPVerifier:
    return DPoPVerifier(clock=FakeClock(now))


def test_every_proof_passes_the_verifier_once_bound_to_the_key_and_token() -> None:
    key = ProofKey()
    proofs = list(make_proofs(key, method="GET", url=URL, count=50, iat=IAT, access_token=TOKEN))
    assert len(proofs) == len(set(proofs)) == 50
    verifier = _verifier(IAT + 30)
    jtis = set()
    for proof in proofs:
        checked = verifier.verify(
            proof, method="GET", url=URL, access_token=TOKEN, expected_jkt=key.jkt
        )
        assert (checked.htm, checked.htu, checked.iat, checked.alg) == ("GET", URL, IAT, "ES256")
        jtis.add(checked.jti)
    assert len(jtis) == 50
    assert key.jkt == thumbprint(key.jwk)
    with pytest.raises(InvalidDPoPProof, match="used before"):
        verifier.verify(proofs[0], method="GET", url=URL, access_token=TOKEN)


def test_two_runs_never_share_a_jti() -> None:
    key = ProofKey()
    verifier = _verifier()
    for _ in range(2):
        for proof in make_proofs(key, method="GET", url=URL, count=3, iat=IAT):
            verifier.verify(proof, method="GET", url=URL)  # raises on a jti seen before


def test_a_proof_for_the_token_endpoint_has_no_ath() -> None:
    key = ProofKey()
    [proof] = make_proofs(key, method="POST", url="http://127.0.0.1:18000/token", count=1, iat=IAT)
    checked = _verifier().verify(proof, method="POST", url="http://127.0.0.1:18000/token")
    assert checked.jkt == key.jkt
    with pytest.raises(InvalidDPoPProof, match="ath"):
        _verifier().verify(
            proof, method="POST", url="http://127.0.0.1:18000/token", access_token=TOKEN
        )


def test_a_run_must_end_within_the_iat_window() -> None:
    key = ProofKey()
    [proof] = make_proofs(key, method="GET", url=URL, count=1, iat=IAT)
    window = DPoPSettings().max_age
    assert window > MAX_RUN_SECONDS
    _verifier(IAT + MAX_RUN_SECONDS).verify(proof, method="GET", url=URL)
    with pytest.raises(InvalidDPoPProof, match="iat"):
        _verifier(IAT + window + 1).verify(proof, method="GET", url=URL)


def test_proofs_needed_leaves_room() -> None:
    assert proofs_needed(1000, 10) == 15_500
    assert proofs_needed(0, 10) == 500


def test_write_proofs_writes_one_a_line(tmp_path: Path) -> None:
    path = tmp_path / "proofs.txt"
    assert write_proofs(path, iter(["a.b.c", "d.e.f"])) == 2
    assert path.read_text() == "a.b.c\nd.e.f\n"


def test_parse_proof_stats() -> None:
    out = 'BENCH_JSON {"requests":1}\nBENCH_DPOP {"sent":12,"starved":0}\n'
    assert parse_proof_stats(out) == ProofStats(sent=12, starved=0)
    with pytest.raises(BenchError, match="no BENCH_DPOP line"):
        parse_proof_stats('BENCH_JSON {"requests":1}\n')
    with pytest.raises(BenchError, match="expected counters"):
        parse_proof_stats('BENCH_DPOP {"sent":12}\n')


def _check(**over: object) -> None:
    args: dict[str, object] = {
        "requests": 100,
        "non_2xx": 0,
        "socket_errors": 0,
        "stats": ProofStats(sent=101, starved=0),
        "made": 200,
    }
    args.update(over)
    check_proof_run("dpop", **args)  # type: ignore[arg-type]


def test_a_clean_run_passes() -> None:
    _check()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"non_2xx": 1}, "1 non-2xx answers"),
        ({"socket_errors": 1}, "1 socket errors"),
        ({"stats": ProofStats(sent=100, starved=1)}, "ran out of proofs"),
        ({"stats": ProofStats(sent=201, starved=0)}, "only 200 were made"),
        ({"requests": 0}, "no request"),
    ],
    ids=["one-refused-proof", "socket-error", "starved", "more-sent-than-made", "no-request"],
)
def test_a_run_with_one_bad_answer_is_refused(over: dict[str, object], message: str) -> None:
    """One refused proof in 100 requests fails the run: no 1% tolerance for DPoP."""
    with pytest.raises(BenchError, match=message):
        _check(**over)


def test_the_placeholder_is_not_a_proof() -> None:
    with pytest.raises(InvalidDPoPProof):
        _verifier().verify(NO_PROOF_LEFT, method="GET", url=URL)


def test_dpop_lua_sends_the_placeholder_when_out_of_proofs() -> None:
    assert f'proof = "{NO_PROOF_LEFT}"' in (WRK_DIR / "dpop.lua").read_text()
