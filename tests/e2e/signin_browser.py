"""A cookie-keeping stand-in for a browser on the issuer's sign-in pages, over any httpx client
(a real socket or the in-process test client).

httpx does not send ``Secure`` cookies over plain http (a browser does, to 127.0.0.1), so this
keeps the cookies itself: every ``Set-Cookie`` is parsed and remembered with its attributes, and
each request carries a ``Cookie`` header built from them. Form posts send the issuer's own
``Origin`` unless told otherwise, as a browser does for a form on the issuer's page.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx

SESSION = "__Host-keyhouse-session"
CSRF = "__Host-keyhouse-csrf"


@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: tuple[str, ...]  # as sent, e.g. ("HttpOnly", "Secure", "Max-Age=28800")

    @classmethod
    def parse(cls, header: str) -> SetCookie:
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        return cls(name, value, tuple(rest))

    @property
    def deletes(self) -> bool:
        return "Max-Age=0" in self.attributes


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hidden(html: str, name: str) -> str:
    """The value of the form's hidden input ``name``."""
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert match is not None, f"no hidden input {name!r} in the page"
    return match.group(1)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a 303's Location (one value each)."""
    assert response.status_code == 303, (response.status_code, response.text[:500])
    query = parse_qs(urlsplit(response.headers["location"]).query, keep_blank_values=True)
    return {k: v[0] for k, v in query.items()}


@dataclass
class Browser:
    http: httpx.Client  # redirects are never followed: tests read the Location
    origin: str  # the issuer's origin, sent as Origin on form posts
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[SetCookie] = field(default_factory=list)  # every one received, in order

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            cookie = SetCookie.parse(header)
            self.set_cookies.append(cookie)
            if cookie.deletes:
                self.cookies.pop(cookie.name, None)
            else:
                self.cookies[cookie.name] = cookie.value
        return response

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        response = self.http.get(
            path, params=params, headers=self._headers(headers), follow_redirects=False
        )
        return self._keep(response)

    def post(
        self,
        path: str,
        data: Mapping[str, str],
        *,
        origin: str | None = "",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST a form; ``origin=""``: the issuer's own, None: no Origin header."""
        all_headers = self._headers(headers)
        if origin is not None and "Origin" not in all_headers:
            all_headers["Origin"] = origin or self.origin
        response = self.http.post(path, data=data, headers=all_headers, follow_redirects=False)
        return self._keep(response)

    def new_cookies(self, since: int) -> dict[str, SetCookie]:
        return {c.name: c for c in self.set_cookies[since:]}

    def login(
        self, page: httpx.Response, username: str, password: str, **extra: str
    ) -> httpx.Response:
        """Fill in and post the login form shown in ``page``."""
        assert page.status_code in (200, 400, 401), (page.status_code, page.text[:500])
        form = {
            "ticket": hidden(page.text, "ticket"),
            "csrf_token": hidden(page.text, "csrf_token"),
            "username": username,
            "password": password,
        }
        return self.post("/login", {**form, **extra})

    def consent(self, page: httpx.Response, decision: str) -> httpx.Response:
        assert page.status_code == 200, (page.status_code, page.text[:500])
        form = {
            "ticket": hidden(page.text, "ticket"),
            "csrf_token": hidden(page.text, "csrf_token"),
            "decision": decision,
        }
        return self.post("/consent", form)
