"""The drill's calls to the stack: tokens and the admin API from the issuer, the issuer's and
the services' ``/healthz``, and one-line descriptions of what went wrong."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from drill.config import DrillError
from shared.protocol import ADMIN_AUDIENCE, ADMIN_SCOPE


def kid_of(token: str) -> str:
    """The ``kid`` of a compact JWS, read without verification (the drill only labels)."""
    try:
        header = token.split(".", 1)[0]
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        kid = data["kid"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DrillError("the issuer returned a token without a readable kid") from exc
    if not isinstance(kid, str):
        raise DrillError("the issuer returned a token without a readable kid")
    return kid


class StackClient:
    """The issuer at ``issuer``, with the admin client's credentials, over ``http``."""

    def __init__(
        self, http: httpx.AsyncClient, issuer: str, client_id: str, client_secret: str
    ) -> None:
        self.http = http
        self.issuer = issuer
        self._client_id = client_id
        self._client_secret = client_secret

    async def token(self, client_id: str, secret: str, **form: str) -> str:
        """A client-credentials access token for ``client_id`` (``form``: audience, scope)."""
        data = await self.grant(client_id, secret, grant_type="client_credentials", **form)
        return str(data["access_token"])

    async def grant(self, client_id: str, secret: str, **form: str) -> dict[str, Any]:
        """``POST /token`` with ``form``; the token response (it has an ``access_token``).
        Refusals say which grant was refused and why, never the form (it may hold a password)."""
        grant_type = form.get("grant_type", "?")
        try:
            response = await self.http.post(
                self.issuer + "/token", data=form, auth=(client_id, secret)
            )
        except httpx.HTTPError as exc:
            raise DrillError(f"cannot reach the issuer's token endpoint: {describe(exc)}") from exc
        target = form.get("audience", "")
        if response.status_code != 200:
            raise DrillError(
                f"the issuer refused a {grant_type} token"
                + (f" for {target}" if target else "")
                + f": {error_text(response)}"
            )
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise DrillError("the issuer's token response has no access_token")
        return data

    async def admin_token(self) -> str:
        """A fresh access token for the admin API."""
        return await self.token(
            self._client_id, self._client_secret, audience=ADMIN_AUDIENCE, scope=ADMIN_SCOPE
        )

    async def admin(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One admin API call with ``token`` (default: a fresh admin token); its JSON object."""
        if token is None:
            token = await self.admin_token()
        try:
            response = await self.http.request(
                method,
                self.issuer + path,
                headers={"Authorization": f"Bearer {token}"},
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise DrillError(f"admin API {path}: {describe(exc)}") from exc
        if response.status_code >= 400:
            raise DrillError(f"admin API {path} answered {error_text(response)}")
        data = response.json()
        if not isinstance(data, dict):
            raise DrillError(f"admin API {path} answered something other than an object")
        return data

    async def check_issuer(self) -> None:
        """:class:`DrillError` unless the issuer's ``/healthz`` answers 200."""
        try:
            response = await self.http.get(self.issuer + "/healthz")
        except httpx.HTTPError as exc:
            raise DrillError(f"issuer {self.issuer}: {describe(exc)}") from exc
        if response.status_code != 200:
            raise DrillError(f"issuer {self.issuer}/healthz answered {response.status_code}")

    async def jwks_state(self, name: str, url: str) -> dict[str, Any]:
        """The ``jwks`` part of the resource service's ``/healthz`` (its key cache)."""
        jwks = (await self.health(url)).get("jwks")
        if not isinstance(jwks, dict):
            raise DrillError(f"{name}: /healthz has no jwks state")
        return jwks

    async def health(self, url: str) -> dict[str, Any]:
        """The resource service's ``/healthz`` document (an object; empty when it is not)."""
        response = await self.http.get(url + "/healthz")
        data = response.json()
        return data if isinstance(data, dict) else {}

    async def subscription(self, url: str) -> str:
        """The service's events subscription state from ``/healthz`` ("connected", ...):
        "absent" when it has none, "unknown" when ``/healthz`` did not answer."""
        try:
            events = (await self.health(url)).get("events")
        except (httpx.HTTPError, ValueError):
            return "unknown"
        if not isinstance(events, dict):
            return "absent"
        return str(events.get("state") or "unknown")


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


def error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        desc = str(data.get("error_description", ""))[:100]
        return f"{response.status_code} {data['error']}" + (f": {desc}" if desc else "")
    return f"HTTP {response.status_code}"
