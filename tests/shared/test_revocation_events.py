"""shared.revocation_events: a verified event lands on the deny-list; a replay, an expired one
and a forged one change nothing (the forged one counted and logged without the token); a
revoked key makes the JWKS client fetch at once; no usable keys propagates."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared import security_events as se
from shared.deny_list import DenyList
from shared.errors import KeysUnavailable
from shared.event_stream import Handled
from shared.revocation_events import RevocationEvents
from shared.security_events import sign_set
from tests.shared.test_event_verification import NOW, World, revoked_jti, signed
from tests.support.jwks_fakes import ISSUER, key, token


class Receiver(World):
    def __init__(self) -> None:
        super().__init__()
        self.deny = DenyList(clock=self.clock)
        self.handler = RevocationEvents(self.events, self.deny, self.jwks)

    def handle(self, data: str) -> Handled:
        async def main() -> Handled:
            handled = await self.handler(data)
            await asyncio.gather(*self.handler._refetches)  # let a started refetch land
            return handled

        return asyncio.run(main())


def test_a_verified_event_is_applied() -> None:
    r = Receiver()
    assert r.handle(signed(revoked_jti())) == Handled("applied", float(NOW))
    assert len(r.deny) == 1
    assert r.handler.applied["jti"] == 1


def test_a_replayed_event_changes_nothing() -> None:
    r = Receiver()
    data = signed(revoked_jti())
    r.handle(data)
    assert r.handle(data).outcome == "replayed"
    assert len(r.deny) == 1
    assert r.handler.applied["jti"] == 1


def test_an_event_whose_tokens_expired_is_not_held() -> None:
    r = Receiver()
    claims = se.token_revoked(issuer=ISSUER, now=NOW, token_jti="t" * 22, exp=NOW - 31)
    assert r.handle(signed(claims)).outcome == "expired"
    assert len(r.deny) == 0


def test_a_forged_event_changes_nothing_and_is_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Receiver()
    forged = [
        signed(revoked_jti(), key(1)),  # a key the issuer does not publish
        signed(revoked_jti(issuer="https://evil.example")),  # another issuer
        token(key(0), r.clock),  # an access token sent as an event
    ]
    with caplog.at_level(logging.WARNING, logger="keyhouse.events"):
        outcomes = [r.handle(data).outcome for data in forged]
    assert outcomes == ["refused"] * 3
    assert len(r.deny) == 0
    assert sum(r.handler.refusals.values()) == 3
    assert len([rec for rec in caplog.records if "refused" in rec.getMessage()]) == 3
    for data in forged:
        for part in data.split("."):
            assert part not in caplog.text


def test_a_revoked_key_is_refetched_at_once_and_signs_no_more_events() -> None:
    r = Receiver()
    r.handle(signed(revoked_jti()))  # the key set is fetched once
    fetches = r.issuer.fetches
    r.issuer.publish(key(0))  # unchanged here: what matters is that a fetch starts now
    claims = se.key_revoked(issuer=ISSUER, now=NOW, kid=key(0).kid, exp=NOW + 900)
    assert r.handle(sign_set(claims, key(0))).outcome == "applied"
    assert r.issuer.fetches == fetches + 1
    assert r.deny.is_kid_revoked(key(0).kid)
    # An event signed by the revoked key is refused, whatever the key set says.
    assert r.handle(signed(revoked_jti())).outcome == "refused"
    assert r.handler.refusals["security event signed with a revoked key"] == 1


def test_no_usable_keys_propagates() -> None:
    r = Receiver()
    r.issuer.fail = True
    with pytest.raises(KeysUnavailable):
        r.handle(signed(revoked_jti()))
    assert len(r.deny) == 0
    assert not r.handler.refusals


def test_a_rule_the_deny_list_cannot_hold_is_refused_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = Receiver()

    def bad_add(*args: object, **kwargs: object) -> str:
        raise ValueError("a deny-list value must not be empty")

    monkeypatch.setattr(r.deny, "add", bad_add)
    assert r.handle(signed(revoked_jti())).outcome == "refused"
    assert r.handler.refusals["a deny-list value must not be empty"] == 1
