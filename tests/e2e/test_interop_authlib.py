"""A client no one here wrote: authlib's OAuth2 client (httpx) signs a person in at a real issuer
process with the authorization code flow and PKCE (S256).

The person's side is a plain httpx client playing the browser: it opens the authorization URL,
reads the login form's hidden inputs (``ticket``, ``csrf_token``), posts the username and
password with the issuer's CSRF cookie, approves the consent form (the client is not
first-party), and stops at the redirect back to the client. httpx keeps no ``Secure`` cookie
over plain http, so the browser here carries the issuer's cookies in a ``Cookie`` header itself.
authlib then redeems the code, calls ``/userinfo`` and refreshes; the id_token is checked
against the issuer's JWKS."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt as pyjwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

# Nothing listens here: the browser stops at the redirect and hands its URL to the client.
REDIRECT_URI = "http://127.0.0.1:8765/interop/callback"
USERNAME = "ada"
PASSWORD = "correct horse battery staple"


# -- the person's browser -------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    hidden: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            action = urljoin(self.page_url, a.get("action") or self.page_url)
            self.forms.append(Form(action, (a.get("method") or "get").lower()))
        elif tag in ("input", "button") and self.forms and "name" in a:
            self.forms[-1].names.append(a["name"])
            if a.get("type", "").lower() == "hidden":
                self.forms[-1].hidden[a["name"]] = a.get("value", "")


def post_forms(html: str, page_url: str) -> list[Form]:
    parser = _Forms(page_url)
    parser.feed(html)
    return [f for f in parser.forms if f.method == "post"]


class Browser:
    """httpx without redirects, keeping cookies by hand (``Secure`` ones too) and sending
    ``Origin`` with its form posts as a browser does."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.http = web.Client(follow_redirects=False, timeout=10)
        self.jar: dict[str, str] = {}
        self.set_cookies: list[str] = []  # every Set-Cookie line seen

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.http.cookies.clear()  # this jar alone sends cookies
        for line in response.headers.get_list("set-cookie"):
            self.set_cookies.append(line)
            pair, *attrs = (part.strip() for part in line.split(";"))
            name, _, value = pair.partition("=")
            gone = any(a.lower() in ("max-age=0",) for a in attrs) or not value
            if gone:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}

    def get(self, url: str) -> httpx.Response:
        return self._keep(self.http.get(url, headers=self._headers()))

    def post(self, url: str, data: dict[str, str]) -> httpx.Response:
        headers = {**self._headers(), "Origin": self.origin}
        return self._keep(self.http.post(url, data=data, headers=headers))

    def close(self) -> None:
        self.http.close()


@dataclass
class SignIn:
    callback: str  # the redirect back to the client, with code, state and iss
    pages: list[str]  # "login", "consent": the forms the person filled in, in order


def sign_in(browser: Browser, authorization_url: str, username: str, password: str) -> SignIn:
    """From the authorization URL to the redirect to REDIRECT_URI, filling in what is shown."""
    pages: list[str] = []
    url = authorization_url
    response = browser.get(url)
    for _ in range(6):
        if response.is_redirect:
            url = urljoin(url, response.headers["location"])
            if url.startswith(REDIRECT_URI):
                return SignIn(url, pages)
            response = browser.get(url)
            continue
        assert response.status_code == 200, (response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        forms = post_forms(response.text, url)
        assert len(forms) == 1, f"expected one form on {url}: {response.text[:500]}"
        form = forms[0]
        if "password" in form.names:
            assert {"ticket", "csrf_token"} <= form.hidden.keys(), form
            assert "login" not in pages, "the login form came back: the login was refused"
            pages.append("login")
            data = {**form.hidden, "username": username, "password": password}
        else:
            assert "decision" in form.names, form
            assert {"ticket", "csrf_token"} <= form.hidden.keys(), form
            pages.append("consent")
            data = {**form.hidden, "decision": "approve"}
        url = form.action
        response = browser.post(url, data)
    raise AssertionError(f"no redirect back to the client; pages seen: {pages}")


# -- the issuer -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(module_stack: Stack) -> dict[str, Any]:
    module_stack.issuer().start()
    module_stack.create_user(USERNAME, PASSWORD, "photos:read")
    created = module_stack.cli(
        "clients", "create", "--name", "authlib interop", "--json",
        "--scope", "openid profile photos:read photos:write",
        "--audience", "photos",
        "--grant", "authorization_code", "--grant", "refresh_token",
        "--redirect-uri", REDIRECT_URI,
    )  # fmt: skip
    client = json.loads(created.stdout)
    metadata = web.get(
        module_stack.issuer_url + "/.well-known/openid-configuration", timeout=10
    ).json()
    return {"url": module_stack.issuer_url, "client": client, "metadata": metadata}


def _jwks_key(metadata: dict[str, Any], token: str) -> Any:
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwks = web.get(metadata["jwks_uri"], timeout=10).json()
    for jwk in jwks["keys"]:
        if jwk["kid"] == kid:
            return pyjwt.PyJWK(jwk).key
    raise AssertionError(f"kid {kid} is not in the issuer's JWKS")


def test_authlib_runs_the_code_flow_with_pkce(issuer: dict[str, Any]) -> None:
    metadata, registered = issuer["metadata"], issuer["client"]
    assert "S256" in metadata["code_challenge_methods_supported"]
    browser = Browser(issuer["url"])
    oauth = OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        scope="openid profile photos:read",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        timeout=10,
    )
    with oauth, contextlib.closing(browser):
        verifier = generate_token(64)
        nonce = generate_token(24)
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"],
            code_verifier=verifier,
            nonce=nonce,
            audience="photos",
        )
        query = parse_qs(urlsplit(url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert "code_verifier" not in query

        signed_in = sign_in(browser, url, USERNAME, PASSWORD)
        assert signed_in.pages == ["login", "consent"]
        back = parse_qs(urlsplit(signed_in.callback).query)
        assert back["state"] == [state]
        assert back["iss"] == [issuer["url"]]  # RFC 9207 (authlib does not check it)

        # The issuer's cookies: none sent without HttpOnly, Secure, SameSite=Lax, Path=/.
        assert browser.set_cookies
        for line in browser.set_cookies:
            attrs = {a.strip().lower() for a in line.split(";")[1:]}
            assert line.startswith("__Host-"), line.split("=")[0]
            assert {"httponly", "secure", "samesite=lax", "path=/"} <= attrs, attrs

        token = oauth.fetch_token(
            metadata["token_endpoint"],
            authorization_response=signed_in.callback,
            code_verifier=verifier,
            state=state,
        )
        assert token["token_type"].lower() == "bearer"
        assert set(token["scope"].split()) == {"openid", "profile", "photos:read"}
        assert token.get("refresh_token")

        id_token = pyjwt.decode(
            token["id_token"],
            _jwks_key(metadata, token["id_token"]),
            algorithms=["RS256"],
            audience=registered["client_id"],
            issuer=issuer["url"],
        )
        assert id_token["nonce"] == nonce
        access = pyjwt.decode(
            token["access_token"],
            _jwks_key(metadata, token["access_token"]),
            algorithms=["RS256"],
            audience="photos",
            issuer=issuer["url"],
        )
        assert access["sub"] == id_token["sub"]
        assert access["sid"] == id_token["sid"]

        userinfo = oauth.get(metadata["userinfo_endpoint"])
        assert userinfo.status_code == 200, userinfo.text
        assert userinfo.json()["sub"] == id_token["sub"]
        assert userinfo.json()["preferred_username"] == USERNAME

        # authlib's refresh: the successor works at /userinfo and keeps the session id.
        refreshed = oauth.refresh_token(metadata["token_endpoint"])
        assert refreshed["access_token"] != token["access_token"]
        assert refreshed["refresh_token"] != token["refresh_token"]
        successor = pyjwt.decode(
            refreshed["access_token"],
            _jwks_key(metadata, refreshed["access_token"]),
            algorithms=["RS256"],
            audience="photos",
            issuer=issuer["url"],
        )
        assert successor["sid"] == access["sid"]
        assert oauth.get(metadata["userinfo_endpoint"]).json()["sub"] == id_token["sub"]

        # The same person again, with the session cookie: no login form, no consent form.
        verifier = generate_token(64)
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, audience="photos"
        )
        again = sign_in(browser, url, USERNAME, PASSWORD)
        assert again.pages == []
        assert parse_qs(urlsplit(again.callback).query)["state"] == [state]
        second = oauth.fetch_token(
            metadata["token_endpoint"],
            authorization_response=again.callback,
            code_verifier=verifier,
            state=state,
        )
        assert "access_token" in second
