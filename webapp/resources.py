"""Calling photos and contacts on the signed-in person's behalf, with access tokens kept fresh.

One refresh token, one access token per audience. The sign-in brings a token for ``photos``;
a token for ``contacts`` comes from refreshing with ``audience=contacts`` (the refresh grant
lets a client switch among its audiences). A token is refreshed shortly before it expires
(a quarter of its lifetime ahead, at most 30 s), and once more when a service answers 401 (a
clock apart, a key revoked). Refresh tokens rotate on every use, so a session's refreshes run
one at a time under its lock: two at once with one token would be reuse and end the family.
An ``invalid_grant`` means the family is gone (signed out at the issuer, revoked, expired):
the session has ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from shared.clock import Clock, system_clock
from shared.jws import strict_json_object
from webapp.issuer_client import IssuerClient, IssuerRefused, dpop_nonce
from webapp.sessions import AccessGrant, Session

logger = logging.getLogger("keyhouse.webapp")

SERVICES = ("photos", "contacts")  # each one's name is its audience and its collection path
SIGN_IN_AUDIENCE = "photos"
MAX_REFRESH_AHEAD = 30.0
MAX_ITEMS_BYTES = 1_048_576
MAX_TITLE = 200  # the demo services' limit on an item's title
# Refusals at /token that mean the person must sign in again (RFC 6749 §5.2).
ENDED_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class SignInEnded(Exception):
    """The session's refresh token is gone: the person signs in again."""


@dataclass(frozen=True)
class Listing:
    """One service's items for the page, or why there are none to show."""

    service: str
    items: tuple[dict[str, Any], ...] = ()
    problem: str | None = None


def refresh_ahead(lifetime: float) -> float:
    return min(MAX_REFRESH_AHEAD, lifetime / 4)


class Resources:
    def __init__(
        self,
        issuer: IssuerClient,
        http: httpx.AsyncClient,
        urls: dict[str, str],
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._issuer = issuer
        self._http = http
        self._urls = urls
        self._clock = clock

    def keep(self, session: Session, audience: str, token: str, expires_in: int) -> None:
        """Remember an access token the session got for ``audience``."""
        assert session.user is not None
        now = self._clock()
        session.user.access[audience] = AccessGrant(token, now + expires_in, float(expires_in))

    async def access_token(self, session: Session, audience: str, *, stale: str = "") -> str:
        """A live access token for ``audience``, refreshed when due or when it is ``stale`` (the
        token a service just refused). Raises SignInEnded; IssuerUnavailable propagates."""
        async with session.lock:
            user = session.user
            if session.ended or user is None:
                raise SignInEnded
            grant = user.access.get(audience)
            now = self._clock()
            if (
                grant is not None
                and grant.token != stale
                and now < grant.expires_at - refresh_ahead(grant.lifetime)
            ):
                return grant.token
            if user.refresh_token is None:
                raise SignInEnded
            try:
                answer = await self._issuer.refresh(user.refresh_token, audience=audience)
            except IssuerRefused as exc:
                if exc.error in ENDED_ERRORS:
                    user.refresh_token = None
                    raise SignInEnded from None
                raise
            if answer.refresh_token is not None:
                user.refresh_token = answer.refresh_token
            self.keep(session, audience, answer.access_token, answer.expires_in)
            logger.debug("refreshed the %s token of %s", audience, user.subject)
            return answer.access_token

    async def list(self, session: Session, service: str) -> Listing:
        """The person's items at ``service``. SignInEnded and IssuerUnavailable propagate."""
        token = await self.access_token(session, service)
        response = await self._call("GET", service, token)
        if response is not None and response.status_code == 401:
            token = await self.access_token(session, service, stale=token)
            response = await self._call("GET", service, token)
        if response is None:
            return Listing(service, problem=f"{service} could not be reached")
        if response.status_code == 403:
            return Listing(service, problem=f"you may not read {service}")
        if response.status_code != 200:
            return Listing(service, problem=f"{service} answered {response.status_code}")
        try:
            body = strict_json_object(response.content[: MAX_ITEMS_BYTES + 1])
        except ValueError:
            return Listing(service, problem=f"{service} gave an answer that is not JSON")
        items = body.get("items")
        if not isinstance(items, list):
            return Listing(service, problem=f"{service} gave no items")
        shown = tuple(i for i in items if isinstance(i, dict) and isinstance(i.get("title"), str))
        return Listing(service, items=shown)

    async def add(self, session: Session, service: str, title: str) -> str | None:
        """Adds an item titled ``title`` at ``service``; None when done, else why not (for the
        page). SignInEnded and IssuerUnavailable propagate."""
        token = await self.access_token(session, service)
        response = await self._call("POST", service, token, title)
        if response is not None and response.status_code == 401:
            token = await self.access_token(session, service, stale=token)
            response = await self._call("POST", service, token, title)
        if response is None:
            return f"{service} could not be reached"
        if response.status_code == 201:
            return None
        if response.status_code == 403:
            return f"you may not add to {service}"
        if response.status_code == 400:
            return f"{service} refused the title (1 to {MAX_TITLE} characters, not blank)"
        return f"{service} answered {response.status_code}"

    async def _call(
        self, method: str, service: str, token: str, title: str | None = None
    ) -> httpx.Response | None:
        """One call with the DPoP scheme and a proof (``htu``: the service's URL and path); a
        401 asking for a DPoP nonce (RFC 9449 §9) is answered once with it."""
        response = await self._send(method, service, token, title, None)
        if response is not None and response.status_code == 401:
            nonce = dpop_nonce(response)
            if nonce is not None:
                response = await self._send(method, service, token, title, nonce)
        return response

    async def _send(
        self, method: str, service: str, token: str, title: str | None, nonce: str | None
    ) -> httpx.Response | None:
        url = f"{self._urls[service]}/{service}"
        proof = self._issuer.dpop.proof(method, url, access_token=token, nonce=nonce)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        try:
            return await self._http.request(
                method, url, headers=headers, json=None if title is None else {"title": title}
            )
        except httpx.HTTPError as exc:
            logger.warning("%s could not be reached: %s", service, type(exc).__name__)
            return None
