"""The resource service over HTTP, in process: RFC 6750 carriers, 503 on cold start, metrics."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from resource_service.app import create_app
from resource_service.settings import ResourceSettings
from shared.clock import FakeClock
from tests.support.jwks_fakes import ISSUER, JWKS_URL, FakeIssuer, key, token


def _client(tmp_path: Path, issuer: FakeIssuer, clock: FakeClock, **env: str) -> TestClient:
    settings = ResourceSettings.from_env(
        {
            "RESOURCE_NAME": "photos",
            "RESOURCE_ISSUER": ISSUER,
            "RESOURCE_JWKS_URL": JWKS_URL,
            "RESOURCE_DATABASE_PATH": str(tmp_path / "photos.db"),
            **env,
        }
    )
    app = create_app(settings, transport=httpx.MockTransport(issuer.handler), clock=clock)
    return TestClient(app)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[TestClient, FakeClock, str]]:
    clock = FakeClock()
    issuer = FakeIssuer()
    issuer.publish(key(0))
    with _client(tmp_path, issuer, clock) as client:
        yield client, clock, token(key(0), clock)


def test_scheme_is_case_insensitive(up: tuple[TestClient, FakeClock, str]) -> None:
    client, _, tok = up
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert (
            client.get("/whoami", headers={"Authorization": f"{scheme} {tok}"}).status_code == 200
        )


def test_one_carrier_only(up: tuple[TestClient, FakeClock, str]) -> None:
    client, _, tok = up
    auth = {"Authorization": f"Bearer {tok}"}
    cases = [
        client.get("/whoami", params={"access_token": tok}, headers=auth),
        client.get("/whoami", params={"access_token": tok}),
        client.get(f"/whoami?x=1&access%5Ftoken={tok}", headers=auth),  # percent-encoded name
        client.post("/photos", data={"access_token": tok}, headers=auth),
        client.post(
            "/photos",
            content=f"title=x&access%5Ftoken={tok}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        ),
        client.get("/whoami", headers=[("Authorization", f"Bearer {tok}")] * 2),
    ]
    for response in cases:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        assert 'error="invalid_request"' in response.headers["www-authenticate"]
    # A form body without access_token is not a carrier: the JSON check answers instead.
    plain = client.post("/photos", data={"title": "x"}, headers=auth)
    assert plain.status_code == 403  # photos:read only; reached the scope check


def test_error_description_is_safe_in_the_challenge(up: tuple[TestClient, FakeClock, str]) -> None:
    client, _, _ = up
    response = client.get("/whoami", headers={"Authorization": 'Bearer a"b\\c'})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    description = challenge.split('error_description="', 1)[1].rsplit('"', 1)[0]
    assert '"' not in description
    assert "\\" not in description


def test_cold_start_without_keys_is_503_with_retry_after_never_401(tmp_path: Path) -> None:
    clock = FakeClock()
    issuer = FakeIssuer(fail=True)
    with _client(tmp_path, issuer, clock) as client:
        response = client.get(
            "/whoami", headers={"Authorization": f"Bearer {token(key(0), clock)}"}
        )
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"] == "temporarily_unavailable"
        assert client.get("/healthz").json()["status"] == "waiting_for_keys"


def test_metrics_report_fetches_keys_age_verifications_and_cache(
    up: tuple[TestClient, FakeClock, str],
) -> None:
    client, _, tok = up
    for _ in range(3):
        client.get("/whoami", headers={"Authorization": f"Bearer {tok}"})
    client.get("/whoami", headers={"Authorization": "Bearer x.y.z"})
    text = client.get("/metrics").text
    assert 'keyhouse_jwks_fetches_total{result="ok"} 1.0' in text
    assert "keyhouse_jwks_keys 1.0" in text
    assert "keyhouse_jwks_cache_age_seconds 0.0" in text
    assert 'keyhouse_token_verifications_total{result="valid"} 3.0' in text
    assert 'keyhouse_token_verifications_total{result="invalid_token"} 1.0' in text
    assert "keyhouse_token_cache_hits_total 2.0" in text
    assert "keyhouse_token_cache_entries 1.0" in text


def test_every_setting_is_documented_with_its_default() -> None:
    from dataclasses import fields

    from resource_service.settings import JWKS_KNOBS
    from shared.jwks_settings import JWKSClientSettings

    doc = (Path(__file__).parents[2] / "docs" / "resource-service-config.md").read_text()
    defaults = {f.name: f.default for f in fields(JWKSClientSettings)}
    for name, var in JWKS_KNOBS.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{var}`")), None)
        assert row is not None, var
        default = defaults[name]
        shown = str(default).lower() if isinstance(default, bool) else f"{default:g}"
        assert f"`{shown}`" in row, (var, shown, row)


def test_every_error_answer_is_json_and_never_stored(up: tuple[TestClient, FakeClock, str]) -> None:
    """The router's 404 and 405 too, through the one renderer (shared.errors.render_error)."""
    client, _, tok = up
    auth = {"Authorization": f"Bearer {tok}"}
    answers = {
        400: client.get("/whoami", params={"access_token": tok}),
        401: client.get("/whoami", headers={"Authorization": "Bearer x.y.z"}),
        403: client.post("/photos", json={"title": "x"}, headers=auth),
        404: client.get("/nope", headers=auth),
        405: client.delete("/photos", headers=auth),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json", status
        assert response.json()["error"], status
        assert response.headers["cache-control"] == "no-store", status
        assert response.headers["pragma"] == "no-cache", status
    assert answers[404].json()["error"] == "not_found"
    assert "GET" in answers[405].headers["allow"]  # the router's header, kept
    assert "www-authenticate" not in answers[404].headers
    assert "www-authenticate" not in answers[405].headers


def test_a_database_failure_is_a_generic_500_never_stored(
    up: tuple[TestClient, FakeClock, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, tok = up
    with sqlite3.connect(tmp_path / "photos.db") as db:  # the service's own store, broken
        db.execute("ALTER TABLE items RENAME TO items_gone")
    lenient = TestClient(client.app, raise_server_exceptions=False)
    response = lenient.get("/photos", headers={"Authorization": f"Bearer {tok}"})
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "internal error"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert "unexpected error on GET /photos: OperationalError" in caplog.text
    assert tok not in caplog.text
