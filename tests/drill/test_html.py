"""The drill's HTML report: self-contained (no script, nothing fetched), escaped, and a page a
real browser draws the timeline of."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from drill.config import DrillConfig
from drill.html import render, write_html
from drill.records import ProbeRun, Revocation, Rotation
from drill.runner import Drill
from tests.support.browser import chromium


def _report() -> dict[str, Any]:
    config = DrillConfig(
        issuer="http://127.0.0.1:1",
        resources={"photos": "http://127.0.0.1:2", "contacts": "http://127.0.0.1:3"},
        client_id="c",
        client_secret="s",
        rotations=1,
        revoke=True,
        revoke_user="ada",
        user_password="pw",
        probes=2,
    )
    drill = Drill(config)
    t0 = drill.started = drill.timeline.started = 1000.0
    drill.ended = t0 + 12
    for second in range(12):
        for _ in range(50 + second):
            drill.timeline.request(t0 + second + 0.5)
    drill.timeline.failure("photos: <b>503</b>", t0 + 4.2)
    for _ in range(7):
        drill.timeline.expected_refusal(t0 + 9.1)
    drill.rotations.append(Rotation(1, "k1", "k2", t0 + 1, t0 + 1, t0 + 3, True))
    drill.keys = [
        {"kid": "k1", "publish_at": t0 - 500, "activate_at": t0 - 490, "retire_at": t0 + 3,
         "revoked_at": None},
        {"kid": "k2", "publish_at": t0 + 1, "activate_at": t0 + 3, "retire_at": None,
         "revoked_at": t0 + 9},
    ]  # fmt: skip
    for name in ("photos", "contacts"):
        drill.services[name].first_accept = {"k1": t0 + 0.1, "k2": t0 + 3.2, "k3": t0 + 9.4}
    user = Revocation("user", "ada", t0 + 6, t0 + 6.05, t0 + 26, response={"disabled": True})
    key = Revocation("key", "k2", t0 + 9, t0 + 9.03, t0 + 24, replacement_kid="k3")
    for rv in (user, key):
        for name in ("photos", "contacts"):
            rv.runs[name] = ProbeRun(
                subscription="connected",
                probes=2,
                first_refusals=[rv.requested_at + 0.02, rv.requested_at + 0.04],
                requests=4,
                statuses=Counter({"200": 2, "401": 2}),
                log=[(rv.requested_at, rv.requested_at + 0.01, "200")],
            )
        drill.revocations.append(rv)
    drill.user_enabled = {"enabled": True, "response": {"disabled": False}}
    return drill.report()


def test_the_page_is_self_contained_and_escaped() -> None:
    page = render(_report())
    assert "<script" not in page.lower()
    # Nothing fetched: no src, no stylesheet link, no url(); the only URLs are the SVG
    # namespace and the issuer's address in the text.
    assert not re.search(r"\bsrc\s*=", page)
    assert "<link" not in page
    assert "url(" not in page
    assert "<b>503</b>" not in page
    assert "photos: &lt;b&gt;503&lt;/b&gt;" in page
    assert '<svg id="timeline"' in page
    assert 'id="legend"' in page
    # retire k1; publish, activate and revoke k2; the two revocation requests. k1's publish
    # and activation came before the drill: not drawn.
    assert page.count('class="marker marker-') == 6
    assert page.count('class="marker marker-action"') == 2
    assert "User revocation: ada" in page
    assert "Key revocation: k2" in page
    assert "Enabled again after the drill: yes" in page


def test_write_html_writes_the_page(tmp_path: Path) -> None:
    target = tmp_path / "drill.html"
    write_html(_report(), target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.e2e
def test_chromium_draws_the_timeline(tmp_path: Path) -> None:
    target = tmp_path / "drill.html"
    write_html(_report(), target)
    with chromium() as browser:
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(target.as_uri())
        svg = page.locator("svg#timeline")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None
        assert box["width"] > 900
        assert box["height"] > 300
        assert page.locator("svg#timeline polyline.requests").count() == 1
        assert page.locator("svg#timeline .marker-revoke").count() == 1
        assert page.locator("svg#timeline .marker-activate").count() == 1
        assert page.locator("svg#timeline .mark-accept").count() == 6  # 3 kids x 2 services
        assert page.locator("svg#timeline .mark-refuse").count() == 4  # 2 revocations x 2
        assert page.locator("svg#timeline rect.bar").count() >= 2
        legend = page.locator("#legend")
        assert legend.is_visible()
        assert "requests/s" in legend.inner_text()
        assert "first refusal after a revocation" in legend.inner_text()
        assert "key revoke" in legend.inner_text()
        assert requests == [target.as_uri()]  # nothing else was fetched
        page.close()
