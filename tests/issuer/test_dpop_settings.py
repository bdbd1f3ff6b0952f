"""ISSUER_DPOP_ALGS and ISSUER_DPOP_NONCE (issue 17): defaults, accepted values, one-line errors."""

from __future__ import annotations

import pytest

from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError


def test_defaults() -> None:
    settings = IssuerSettings.from_env({})
    assert settings.dpop_algs == ("ES256", "RS256")
    assert settings.dpop_nonce is False


def test_algorithms_and_nonce_from_the_environment() -> None:
    settings = IssuerSettings.from_env(
        {"ISSUER_DPOP_ALGS": " PS256  ES384 PS256 ", "ISSUER_DPOP_NONCE": "1"}
    )
    assert settings.dpop_algs == ("PS256", "ES384")
    assert settings.dpop_nonce is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ISSUER_DPOP_ALGS": "ES256 HS256"}, "ISSUER_DPOP_ALGS must be some of"),
        ({"ISSUER_DPOP_ALGS": "none"}, "(got 'none')"),
        ({"ISSUER_DPOP_ALGS": "  "}, "ISSUER_DPOP_ALGS must be some of"),
        ({"ISSUER_DPOP_NONCE": "yes"}, "ISSUER_DPOP_NONCE must be 0 or 1"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        IssuerSettings.from_env(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
