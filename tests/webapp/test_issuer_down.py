"""The web app while the issuer is down (real processes): what needs no issuer keeps working
(photos, whose token is still good), what does shows why on its part of the page (contacts,
whose token needs a refresh), and a sign-in coming back meanwhile is a 502 page, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import web
from tests.support.browser import Agent, location, sign_in, start_demo_stack, to_callback

pytestmark = pytest.mark.e2e


def test_the_page_keeps_what_it_can_while_the_issuer_is_down(tmp_path: Path) -> None:
    demo = start_demo_stack(tmp_path, access_token_ttl=900)
    try:
        demo.add_item(demo.photos, "photos", "kept while the issuer is down")
        signed_in = Agent()
        sign_in(signed_in, demo)  # the page not loaded yet: no contacts token so far
        pending = Agent()
        callback = to_callback(pending, demo)
        issuer = next(s for s in demo.stack.servers if s.port == demo.stack.issuer_port)
        issuer.stop()

        page = signed_in.get(demo.webapp_url + "/")
        assert page.status_code == 200
        assert "kept while the issuer is down" in page.text
        assert "the issuer could not be reached to renew access" in page.text
        assert 'id="sign-out"' in page.text  # still signed in

        answer = pending.get(callback)
        assert answer.status_code == 502
        assert "The issuer could not be reached" in answer.text
        assert "Traceback" not in demo.webapp.logs()

        issuer.start()  # back: the contacts token is had, the page is whole again
        page = signed_in.get(demo.webapp_url + "/")
        assert "could not be reached" not in page.text
        assert location(signed_in.get(demo.webapp_url + "/login")) == "/"
        assert web.get(demo.webapp_url + "/readyz", timeout=5).status_code == 200
    finally:
        demo.stack.stop_all()
