"""The resource service's DPoP settings: defaults, parsing, refusals, and their documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from resource_service.settings import ResourceSettings
from shared.errors import ConfigurationError


def _settings(**env: str) -> ResourceSettings:
    return ResourceSettings.from_env({"RESOURCE_NAME": "photos", **env})


def test_defaults() -> None:
    s = _settings()
    assert s.public_url is None
    assert s.dpop_algorithms == ("ES256", "RS256")
    assert s.require_dpop is False
    assert s.dpop_replay_cache_size == 200_000


def test_values() -> None:
    s = _settings(
        RESOURCE_PUBLIC_URL="https://api.example.com/photos/",
        RESOURCE_DPOP_ALGS="  PS256 ES384  ES384",
        RESOURCE_REQUIRE_DPOP="yes",
        RESOURCE_DPOP_REPLAY_CACHE_SIZE="5",
    )
    assert s.public_url == "https://api.example.com/photos"
    assert s.dpop_algorithms == ("PS256", "ES384")
    assert s.require_dpop is True
    assert s.dpop_replay_cache_size == 5


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("RESOURCE_PUBLIC_URL", "api.example.com"),
        ("RESOURCE_PUBLIC_URL", "ftp://api.example.com"),
        ("RESOURCE_PUBLIC_URL", "https://user@api.example.com"),
        ("RESOURCE_PUBLIC_URL", "https://api.example.com/?x=1"),
        ("RESOURCE_PUBLIC_URL", "https://api.example.com/#x"),
        ("RESOURCE_DPOP_ALGS", ""),
        ("RESOURCE_DPOP_ALGS", "HS256"),
        ("RESOURCE_DPOP_ALGS", "none"),
        ("RESOURCE_DPOP_ALGS", "ES256,RS256"),
        ("RESOURCE_REQUIRE_DPOP", "maybe"),
        ("RESOURCE_DPOP_REPLAY_CACHE_SIZE", "0"),
        ("RESOURCE_DPOP_REPLAY_CACHE_SIZE", "-1"),
        ("RESOURCE_DPOP_REPLAY_CACHE_SIZE", "many"),
    ],
)
def test_bad_values_are_one_line_configuration_errors(var: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=var):
        _settings(**{var: value})


def test_every_dpop_setting_is_documented_with_its_default() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "resource-service-config.md").read_text()
    rows = {
        "RESOURCE_REQUIRE_DPOP": "`false`",
        "RESOURCE_PUBLIC_URL": "(unset",
        "RESOURCE_DPOP_ALGS": "`ES256 RS256`",
        "RESOURCE_DPOP_REPLAY_CACHE_SIZE": "`200000`",
    }
    for var, default in rows.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{var}`")), None)
        assert row is not None, var
        assert row.split("|")[2].strip().startswith(default), row
