"""``GET /events`` (issuer/endpoints/events.py) refusals, through the app: a bad resume point is
400 ``invalid_request`` (header or query), the subscriber cap 503 with ``Retry-After``, other
methods 405; both discovery documents name the stream. (The stream itself: tests/e2e/
test_events_stream.py and tests/issuer/events/test_broadcaster.py.)"""

from __future__ import annotations

import pytest

from tests.issuer.conftest import App, MakeApp


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Last-Event-ID": "abc"}, ""), ({}, "?after=-3"), ({"Last-Event-ID": "9" * 30}, "")],
)
def test_a_bad_resume_point_is_invalid_request(
    app: App, headers: dict[str, str], query: str
) -> None:
    response = app.http.get("/events" + query, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


def test_over_the_cap_is_503(make_app: MakeApp) -> None:
    app = make_app(events_max_subscribers=2)
    held = [app.issuer.broadcaster.subscribe() for _ in range(2)]
    response = app.http.get("/events")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["retry-after"]) > 0
    for subscription in held:
        app.issuer.broadcaster.unsubscribe(subscription)


def test_only_get(app: App) -> None:
    assert app.http.post("/events").status_code == 405


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
def test_discovery_names_the_stream(app: App, path: str) -> None:
    document = app.http.get(path).json()
    assert document["keyhouse_events_endpoint"] == app.settings.issuer_url + "/events"
