"""Pushed revocation events applied: each SET from the stream verified and put on the deny-list.

:class:`RevocationEvents` is the handler of :class:`~shared.event_stream.EventSubscriber`. For
each ``set`` message it answers a :class:`~shared.event_stream.Handled` outcome:

* ``applied``: verified (``shared/event_verification.py``) and on the deny-list
  (``shared/deny_list.py``); a ``kid`` rule (a revoked signing key) also starts a JWKS fetch at
  once (:meth:`~shared.jwks_client.JWKSClient.refetch`, in the background: the deny-list already
  refuses the key's tokens), so the key leaves the service's set without waiting for a poll;
* ``replayed``: an event already applied (its ``jti``): nothing changes;
* ``expired``: every token it covers has expired: nothing to hold;
* ``refused``: a forged or malformed event (wrong key, wrong issuer, an access token sent as an
  event, a bad payload, or one signed by a key an earlier event revoked): nothing changes; it is
  counted by reason and logged (the rule it broke, never the token).

No usable key set (:class:`~shared.errors.KeysUnavailable`) is not a verdict on the event: it
propagates, and the subscriber reconnects later without moving past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from shared.deny_list import APPLIED, DenyList
from shared.errors import KeyhouseError, TemporarilyUnavailable
from shared.event_stream import Handled
from shared.event_verification import EventVerifier
from shared.jwks_client import JWKSClient

logger = logging.getLogger("keyhouse.events")

REFUSED = "refused"


class RevocationEvents:
    """Verifies pushed events and applies them to ``deny``."""

    def __init__(self, verifier: EventVerifier, deny: DenyList, jwks: JWKSClient) -> None:
        self.verifier = verifier
        self.deny = deny
        self.jwks = jwks
        self.refusals: Counter[str] = Counter()  # refused events by description
        self.applied: Counter[str] = Counter()  # applied events by claim kind
        self._refetches: set[asyncio.Task[None]] = set()

    async def __call__(self, data: str) -> Handled:
        try:
            event = await self.verifier.verify(data)
            if self.deny.is_kid_revoked(event.kid):
                raise KeyhouseError("security event signed with a revoked key")
        except TemporarilyUnavailable:
            raise
        except KeyhouseError as exc:
            return self._refused(exc.description)
        rule = event.rule
        try:
            outcome = self.deny.add(
                rule.claim, rule.value, before=rule.before, expires=rule.expires, event_id=event.jti
            )
        except ValueError as exc:  # a rule the deny-list cannot hold: refused, never retried
            return self._refused(str(exc))
        if outcome == APPLIED:
            self.applied[rule.claim] += 1
            logger.info("security event %s applied: tokens by %s refused", event.jti, rule.claim)
            if rule.claim == "kid":
                self._start_refetch()
        return Handled(outcome, float(event.issued_at))

    def _refused(self, reason: str) -> Handled:
        self.refusals[reason] += 1
        logger.warning("security event refused: %s", reason)
        return Handled(REFUSED)

    def _start_refetch(self) -> None:
        task = asyncio.get_running_loop().create_task(self.jwks.refetch())
        self._refetches.add(task)
        task.add_done_callback(self._refetches.discard)

    async def aclose(self) -> None:
        for task in list(self._refetches):
            task.cancel()
        await asyncio.gather(*self._refetches, return_exceptions=True)
