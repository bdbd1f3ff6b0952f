"""issuer/pages.py and the sign-in settings: templates autoescaped, every page's security
headers, the stylesheet, and ISSUER_SESSION_IDLE_TTL / ISSUER_SESSION_TTL / ISSUER_CODE_TTL."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from starlette.requests import Request

from issuer import pages
from issuer.settings import IssuerSettings
from shared.errors import ConfigurationError

TEMPLATES = Path(pages.__file__).parent / "templates"


def test_csp_names_the_form_targets_origin_only() -> None:
    assert pages.content_security_policy() == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    csp = pages.content_security_policy(
        ["http://127.0.0.1:8003/callback?x=1", "https://app.example:443/cb", "https://a.b:8443/"]
    )
    assert "form-action 'self' http://127.0.0.1:8003 https://app.example https://a.b:8443;" in csp


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "https://a b/", "https://x;script-src *", "data:,x", "https://[::1/"],
)
def test_csp_leaves_out_what_is_not_a_plain_origin(url: str) -> None:
    assert "form-action 'self';" in pages.content_security_policy([url])


def test_ipv6_origin() -> None:
    assert pages.origin_of("http://[::1]:8003/cb") == "http://[::1]:8003"


def test_render_escapes_and_sends_the_headers() -> None:
    response = pages.error_page("Oops <b>", "<script>alert(1)</script>", status=400)
    body = bytes(response.body).decode()
    assert response.status_code == 400
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "Oops &lt;b&gt;" in body
    headers = response.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"].startswith("default-src 'none';")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def test_a_page_with_a_form_names_the_redirect_origin_and_sends_no_referrer() -> None:
    response = pages.render(
        "error.html",
        {"title": "t", "description": "d"},
        form_action=["https://app.example/cb"],
    )
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "form-action 'self' https://app.example;" in response.headers["content-security-policy"]


def test_templates_hold_no_inline_script_or_style() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script|<style|\sstyle=|\son[a-z]+=|javascript:", text, re.I), (
            template.name
        )


def test_a_missing_template_variable_is_an_error() -> None:
    with pytest.raises(Exception, match="undefined"):
        pages.render("error.html", {"title": "t"})


def test_stylesheet() -> None:
    scope = {"type": "http", "method": "GET", "path": "/static/keyhouse.css", "headers": []}
    response = asyncio.run(pages.static(Request(scope)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert bytes(response.body).startswith(b"/*")


# -- settings ---------------------------------------------------------------------------------


def test_signin_settings_defaults() -> None:
    settings = IssuerSettings.from_env({})
    assert (settings.session_idle_ttl, settings.session_ttl, settings.code_ttl) == (
        1800,
        28800,
        60,
    )


def test_signin_settings_from_env() -> None:
    settings = IssuerSettings.from_env(
        {"ISSUER_SESSION_IDLE_TTL": "60", "ISSUER_SESSION_TTL": "120", "ISSUER_CODE_TTL": "600"}
    )
    assert (settings.session_idle_ttl, settings.session_ttl, settings.code_ttl) == (60, 120, 600)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ISSUER_CODE_TTL": "0"}, "ISSUER_CODE_TTL must be at least 1"),
        ({"ISSUER_CODE_TTL": "601"}, "ISSUER_CODE_TTL must be from 1 to 600 seconds"),
        ({"ISSUER_CODE_TTL": "1m"}, "ISSUER_CODE_TTL must be an integer"),
        ({"ISSUER_SESSION_TTL": "0"}, "ISSUER_SESSION_TTL must be at least 1"),
        ({"ISSUER_SESSION_IDLE_TTL": "x"}, "ISSUER_SESSION_IDLE_TTL must be an integer"),
        (
            {"ISSUER_SESSION_IDLE_TTL": "100", "ISSUER_SESSION_TTL": "99"},
            "ISSUER_SESSION_IDLE_TTL must be at most ISSUER_SESSION_TTL",
        ),
    ],
)
def test_signin_settings_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        IssuerSettings.from_env(env)
    assert caught.value.description.startswith(message)
