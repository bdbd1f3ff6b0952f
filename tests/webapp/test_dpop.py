"""The web app's tokens are DPoP-bound (RFC 9449), its key kept in its memory: against the real
demo stack with photos and contacts taking DPoP-bound tokens only (``RESOURCE_REQUIRE_DPOP=1``),
which refuse a Bearer token and refuse an unbound token sent as DPoP. The page listing and
adding items there, across access tokens that expire, shows every token the web app holds is
bound to its key and every call carries a proof that passes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from issuer.accounts import AccountStore
from issuer.engines import make_engine
from issuer.seed import seed_demo
from tests.support import web
from tests.support.browser import Agent, DemoStack, hidden, location, sign_in, webapp_server
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

TTL = 2  # seconds an access token lives; the services allow no leeway


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    root = tmp_path_factory.mktemp("webapp-dpop")
    stack = Stack(root)
    try:
        stack.cli("init")
        issuer = stack.issuer(ISSUER_ACCESS_TOKEN_TTL=str(TTL))
        only_dpop = {"RESOURCE_TOKEN_LEEWAY": "0", "RESOURCE_REQUIRE_DPOP": "1"}
        photos = stack.resource("photos", **only_dpop)
        contacts = stack.resource("contacts", **only_dpop)
        webapp = webapp_server(stack, photos=photos, contacts=contacts)
        engine = make_engine(stack.database_url)
        try:
            creds = seed_demo(
                AccountStore(engine), root / "demo.json", time.time(), webapp_url=webapp.url
            )
        finally:
            engine.dispose()
        for server in (issuer, photos, contacts, webapp):
            server.start()
        yield DemoStack(stack, photos, contacts, webapp, creds)
    finally:
        stack.stop_all()


def verifications(url: str) -> dict[str, float]:
    text = web.get(url + "/metrics", timeout=10).text
    found = re.findall(
        r'^keyhouse_token_verifications_total\{result="([^"]+)"\} (\S+)$', text, re.M
    )
    return {result: float(count) for result, count in found}


def test_the_services_refuse_a_bearer_token_here(demo: DemoStack) -> None:
    """The control: these services take no Bearer token, so the page below is DPoP at work."""
    token = demo.user_token("photos", "photos:read")
    answer = web.get(
        demo.photos.url + "/photos", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 401


def test_the_page_lists_adds_and_refreshes_with_dpop_bound_tokens(demo: DemoStack) -> None:
    agent = Agent()
    sign_in(agent, demo)
    home = agent.get(demo.webapp_url + "/")
    assert home.status_code == 200
    assert "could not" not in home.text, home.text
    assert "answered" not in home.text, home.text
    token = hidden(home.text, "csrf_token")
    own = {"Origin": demo.webapp_url}
    for service, title in (("photos", "harbour"), ("contacts", "Ada Lovelace")):
        form = {"csrf_token": token, "title": title}
        url = f"{demo.webapp_url}/items/{service}"
        assert location(agent.request("POST", url, data=form, headers=own)) == "/"
    # Past two lifetimes of the access tokens (refreshed with a proof, bound again), the page
    # still lists both; each fetch of it is a call to each service.
    until = time.time() + 2 * TTL + 1
    while True:
        page = agent.get(demo.webapp_url + "/")
        assert page.status_code == 200
        assert "harbour" in page.text, page.text
        assert "Ada Lovelace" in page.text, page.text
        assert 'id="notice"' not in page.text, page.text
        if time.time() > until:
            break
        time.sleep(0.5)
    for server in (demo.photos, demo.contacts):
        counts = verifications(server.url)
        assert counts.get("valid", 0) >= 3, counts
        # Nothing the web app sent was refused (the control above is the one invalid_token).
        assert counts.get("invalid_dpop_proof", 0) == 0, counts
        assert counts.get("use_dpop_nonce", 0) == 0, counts
