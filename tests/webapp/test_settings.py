"""WebappSettings from the environment: defaults, the client secret (value or file), URL rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from webapp.settings import WebappSettings

SECRET = {"WEBAPP_CLIENT_SECRET": "s3cret-value"}


def test_defaults() -> None:
    s = WebappSettings.from_env(SECRET)
    assert s.url == "http://127.0.0.1:8003"
    assert s.redirect_uri == "http://127.0.0.1:8003/callback"
    assert s.post_logout_redirect_uri == "http://127.0.0.1:8003/signed-out"
    assert s.issuer == s.issuer_url == "http://127.0.0.1:8000"
    assert s.client_id == "demo-webapp"
    assert s.scope == "contacts:read contacts:write openid photos:read photos:write profile"
    assert (s.photos_url, s.contacts_url) == ("http://127.0.0.1:8001", "http://127.0.0.1:8002")
    assert (s.session_idle_ttl, s.session_ttl, s.max_sessions) == (1800, 28800, 10_000)
    assert s.issuer_origin == "http://127.0.0.1:8000"
    assert "s3cret" not in repr(s)


def test_the_secret_from_a_file_one_newline_dropped(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    s = WebappSettings.from_env({"WEBAPP_CLIENT_SECRET_FILE": str(path)})
    assert s.client_secret == "from-file"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "client secret is missing"),
        ({**SECRET, "WEBAPP_CLIENT_SECRET_FILE": "/x"}, "not both"),
        ({"WEBAPP_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "cannot read"),
        ({**SECRET, "WEBAPP_ISSUER": "http://issuer.example"}, "must use https"),
        ({**SECRET, "WEBAPP_URL": "http://app.example"}, "must use https"),
        ({**SECRET, "WEBAPP_URL": "https://app.example/sub"}, "no path"),
        ({**SECRET, "WEBAPP_PHOTOS_URL": "ftp://x"}, "absolute http"),
        ({**SECRET, "WEBAPP_ISSUER": "https://u:p@issuer.example"}, "credentials"),
        ({**SECRET, "WEBAPP_SCOPE": "photos:read"}, "must include openid"),
        ({**SECRET, "WEBAPP_SCOPE": "openid  profile"}, "WEBAPP_SCOPE"),
        ({**SECRET, "WEBAPP_SESSION_IDLE_TTL": "100", "WEBAPP_SESSION_TTL": "10"}, "exceed"),
        ({**SECRET, "WEBAPP_MAX_SESSIONS": "0"}, "between"),
        ({**SECRET, "WEBAPP_HTTP_TIMEOUT": "nan"}, "between"),
        ({**SECRET, "WEBAPP_ALLOW_HTTP": "perhaps"}, "true or false"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        WebappSettings.from_env(env)


def test_plain_http_to_a_private_network_needs_the_opt_in() -> None:
    env = {
        **SECRET,
        "WEBAPP_URL": "http://localhost:8003",
        "WEBAPP_ISSUER": "http://localhost:8000",
        "WEBAPP_ISSUER_URL": "http://haproxy:8000",
        "WEBAPP_PHOTOS_URL": "http://photos:8000",
        "WEBAPP_CONTACTS_URL": "http://contacts:8000",
    }
    with pytest.raises(ConfigurationError, match="WEBAPP_ALLOW_HTTP"):
        WebappSettings.from_env(env)
    s = WebappSettings.from_env({**env, "WEBAPP_ALLOW_HTTP": "1"})
    assert s.issuer == "http://localhost:8000"
    assert s.issuer_url == "http://haproxy:8000"
