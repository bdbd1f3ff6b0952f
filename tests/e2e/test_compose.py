"""The container stack for real: scripts/compose-smoke brings compose.yaml (+ compose.ci.yaml)
up, gets tokens from the issuer container, uses them at both resource containers, rotates a key
inside the issuer container, checks again and tears down.

Skipped when no Docker engine answers, unless KEYHOUSE_REQUIRE_DOCKER=1 (CI), where that is a
failure instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scripts" / "compose-smoke"

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        return "no Docker engine answers `docker info`"
    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        return "`docker compose` (Compose v2) is not available"
    return None


@pytest.fixture(scope="module")
def docker_engine() -> None:
    problem = _docker_problem()
    if problem is None:
        return
    if os.environ.get("KEYHOUSE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"KEYHOUSE_REQUIRE_DOCKER=1 but {problem} (run docker/setup-engine.sh)")
    pytest.skip(problem)


def test_compose_stack_issues_verifies_and_rotates(docker_engine: None) -> None:
    proc = subprocess.run(
        [sys.executable, str(SMOKE)], cwd=ROOT, capture_output=True, text=True, timeout=1500
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"scripts/compose-smoke failed:\n{output[-8000:]}"
    assert "compose-smoke: OK" in output
