"""The GET /events settings (issuer/settings.py): defaults, and each one refused below its
minimum or when not a number."""

from __future__ import annotations

import pytest

from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError


def test_defaults() -> None:
    settings = IssuerSettings.from_env({})
    assert settings.events_max_subscribers == 64
    assert settings.events_heartbeat == 10.0
    assert settings.events_poll_interval == 0.2


def test_set_from_the_environment() -> None:
    settings = IssuerSettings.from_env(
        {
            "ISSUER_EVENTS_MAX_SUBSCRIBERS": "3",
            "ISSUER_EVENTS_HEARTBEAT": "0.5",
            "ISSUER_EVENTS_POLL_INTERVAL": "0.05",
        }
    )
    assert (settings.events_max_subscribers, settings.events_heartbeat) == (3, 0.5)
    assert settings.events_poll_interval == 0.05


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ISSUER_EVENTS_MAX_SUBSCRIBERS", "0"),
        ("ISSUER_EVENTS_MAX_SUBSCRIBERS", "many"),
        ("ISSUER_EVENTS_HEARTBEAT", "0"),
        ("ISSUER_EVENTS_HEARTBEAT", "soon"),
        ("ISSUER_EVENTS_HEARTBEAT", "nan"),
        ("ISSUER_EVENTS_HEARTBEAT", "inf"),
        ("ISSUER_EVENTS_POLL_INTERVAL", "0.001"),
        ("ISSUER_EVENTS_POLL_INTERVAL", "x"),
    ],
)
def test_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        IssuerSettings.from_env({name: value})
