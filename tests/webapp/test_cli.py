"""The ``webapp`` command: bad configuration and a second worker are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import base_env


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in base_env().items() if not k.startswith("WEBAPP_")}
    return subprocess.run(
        [sys.executable, "-m", "webapp.cli", "serve", "--port", "1", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_client_secret_is_one_line() -> None:
    result = _serve()
    assert result.returncode == 2
    assert result.stderr == (
        "webapp: error: the web app's client secret is missing: set WEBAPP_CLIENT_SECRET_FILE "
        "(or WEBAPP_CLIENT_SECRET)\n"
    )


def test_a_second_worker_is_refused() -> None:
    result = _serve("--workers", "2", WEBAPP_CLIENT_SECRET="s")
    assert result.returncode == 2
    assert "run it with one worker" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_names_itself() -> None:
    result = _serve(WEBAPP_CLIENT_SECRET="s", WEBAPP_ISSUER="http://issuer.example")
    assert result.returncode == 2
    assert result.stderr.startswith("webapp: error: WEBAPP_ISSUER must use https")
