"""Token introspection (RFC 7662) and revocation (RFC 7009).

Revocation ends a refresh-token family, or revokes an access token of the revoking client: its
``jti`` goes into the revoked list (issuer/revoked.py) and a security event goes to the resource
services (issuer/events/), which verify access tokens offline and learn of it that way.
Introspection reports an access token active exactly while its signature, issuer, key and
lifetime check out here and its ``jti`` is not in the revoked list. Public clients (no secret)
may revoke their tokens but not introspect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from issuer.accounts import Client, user_subject
from issuer.db import refresh_tokens
from issuer.events import SecurityEvents
from issuer.keys import KeyRing
from issuer.refresh import RefreshTokenStore, token_hash
from issuer.revoked import MAX_JTI, RevokedAccessTokens
from issuer.settings import IssuerSettings
from shared.clock import Clock, system_clock
from shared.errors import InvalidClient, InvalidRequest, KeyhouseError
from shared.tokens import TokenVerifier

INACTIVE: dict[str, Any] = {"active": False}
TOKEN_TYPE_HINTS = frozenset({"access_token", "refresh_token"})


class Introspector:
    def __init__(
        self,
        settings: IssuerSettings,
        keyring: KeyRing,
        refresh: RefreshTokenStore,
        *,
        clock: Clock = system_clock,
        revoked: RevokedAccessTokens | None = None,
        events: SecurityEvents | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.refresh = refresh
        self.clock = clock
        self.revoked = revoked if revoked is not None else RevokedAccessTokens(refresh.engine)
        self.events = events

    def _token_param(self, form: dict[str, str]) -> tuple[str, str | None]:
        token = form.get("token")
        if token is None:
            raise InvalidRequest("token is required")
        hint = form.get("token_type_hint")
        return token, hint if hint in TOKEN_TYPE_HINTS else None

    def introspect(self, form: dict[str, str], client: Client) -> dict[str, Any]:
        if client.public:  # what a public client holds is no credential to ask with
            raise InvalidClient("public clients may not use introspection")
        token, _hint = self._token_param(form)  # the hint only saves a lookup; ignored
        if len(token) > 8192:
            return INACTIVE
        if token.count(".") == 2:
            return self._introspect_access(token, client)
        return self._introspect_refresh(token, client)

    def _introspect_access(self, token: str, client: Client) -> dict[str, Any]:
        try:
            claims = self._verify_any_audience(token)
        except KeyhouseError:
            return INACTIVE
        if claims is None:
            return INACTIVE
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else list(aud)
        # A client learns about tokens it was issued or tokens meant for its own audiences.
        if claims["client_id"] != client.client_id and not set(audiences) & set(client.audiences):
            return INACTIVE
        if self.revoked.is_revoked(str(claims["jti"])):
            return INACTIVE
        # RFC 9449 §6.2: a DPoP-bound token (cnf.jkt, copied with the claims) is of type DPoP.
        token_type = "DPoP" if "cnf" in claims else "Bearer"
        return {"active": True, "token_type": token_type, **claims}

    def _verify_any_audience(self, token: str) -> dict[str, Any] | None:
        """The token's claims if it is valid here for whichever audience it names, else None."""
        probe = TokenVerifier(issuer=self.settings.issuer_url, audience="", clock=self.clock)
        jwt = probe.parse(token)
        key = self.keyring.verification_key(jwt.header["kid"])
        if key is None:
            return None  # unknown or revoked key
        aud = jwt.payload.get("aud")
        first = aud if isinstance(aud, str) else (aud[0] if isinstance(aud, list) and aud else "")
        # No leeway: RFC 7662 "active" means not expired now, not "still accepted somewhere".
        verifier = TokenVerifier(
            issuer=self.settings.issuer_url, audience=str(first), leeway=0, clock=self.clock
        )
        return dict(verifier.verify(jwt, key).claims)

    def _introspect_refresh(self, token: str, client: Client) -> dict[str, Any]:
        with self.refresh.engine.connect() as conn:
            row = (
                conn.execute(
                    select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(token))
                )
                .mappings()
                .first()
            )
        now = self.clock()
        if (
            row is None
            or row["client_id"] != client.client_id
            or row["used_at"] is not None
            or row["revoked_at"] is not None
            or now >= row["expires_at"]
        ):
            return INACTIVE
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": row["client_id"],
            "sub": user_subject(row["user_id"]),
            "scope": row["scopes"],
            "aud": row["audience"],
            "iss": self.settings.issuer_url,
            "exp": int(row["expires_at"]),
            "iat": int(row["created_at"]),
        }

    def revoke(self, form: dict[str, str], client: Client) -> str | None:
        """RFC 7009 §2.2: unknown, invalid or foreign tokens are answered 200 all the same.

        The hint is ignored (RFC 7009 §2.1 allows a wrong hint; the token's shape decides).
        Returns what was revoked: ``"refresh"`` (a refresh-token family ended), ``"access"`` (an
        access token of this client, valid here, revoked now), or None (nothing).
        """
        token, _hint = self._token_param(form)
        if len(token) > 8192:
            return None
        if token.count(".") == 2:
            return "access" if self._revoke_access(token, client) else None
        if len(token) > 256:
            return None
        ended = self.refresh.revoke_family_of(token, client_id=client.client_id, now=self.clock())
        return "refresh" if ended else None

    def _revoke_access(self, token: str, client: Client) -> bool:
        """Revoke an access token the client was issued and that is valid here now (an expired
        one needs nothing): its ``jti`` into the revoked list and the event for the resource
        services, in one transaction. A token revoked already records nothing again."""
        try:
            claims = self._verify_any_audience(token)
        except KeyhouseError:
            return False
        if claims is None or claims["client_id"] != client.client_id:
            return False
        jti, exp = str(claims["jti"]), int(claims["exp"])
        if not jti or len(jti) > MAX_JTI:
            return False
        try:
            with self.refresh.engine.begin() as conn:
                if self.events is not None:  # the event lock first (issuer/events/store.py)
                    self.events.store.lock(conn)
                added = self.revoked.revoke(jti, exp, conn=conn)
                if added and self.events is not None:
                    self.events.token_revoked(conn, jti, exp, reason="access token revoked")
        except IntegrityError:  # a concurrent revocation of the same token won (and told)
            return False
        return added
