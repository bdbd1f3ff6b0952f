"""docs/revocation.md states the key-revocation bound the code implements: a resource service
drops a revoked key at its next conditional JWKS refresh, due every RESOURCE_JWKS_POLL_INTERVAL
(the drill's --poll-interval), not when the JWKS max-age runs out."""

from __future__ import annotations

import re
from pathlib import Path

from issuer.cli import build_parser
from resource_service.settings import ResourceSettings
from shared.jwks_settings import JWKSClientSettings

ROOT = Path(__file__).resolve().parents[1]


def _emergency_paragraph() -> str:
    text = (ROOT / "docs" / "revocation.md").read_text()
    start = text.index("**`issuer keys revoke KID`**")
    return " ".join(text[start : text.index("\n\n", start)].split())


def test_the_documented_key_revocation_bound_is_the_poll_interval() -> None:
    paragraph = _emergency_paragraph()
    poll = JWKSClientSettings(issuer="https://issuer.test").poll_interval
    assert f"`RESOURCE_JWKS_POLL_INTERVAL` (default {poll:g} s)" in paragraph
    # The max-age is named only to say it is not the bound.
    assert not re.search(r"when their cache expires, `ISSUER_JWKS_MAX_AGE`", paragraph)
    assert "is not the bound" in paragraph
    # The same default everywhere: the service's setting and the drill's assumption.
    env_default = ResourceSettings.from_env({"RESOURCE_NAME": "photos"}).jwks.poll_interval
    assert env_default == poll
    drill = build_parser().parse_args(["drill", "--client-id", "x"])
    assert drill.poll_interval == poll
