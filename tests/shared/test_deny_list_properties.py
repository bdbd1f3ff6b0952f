"""Properties of shared.deny_list (Hypothesis): random events, random tokens, a moving clock.

* Sound: a refused token is covered by some applied event that has not expired, by the spec's
  rule (docs: claim matches, ``sub`` hashed, ``iat <= event_timestamp`` for sid/fid/sub), and
  for the claim kind the list names: the deny-list never refuses a token no event covers,
  whatever the bound drops.
* Complete while nothing is dropped for room: a token an unexpired applied event covers is
  refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import FakeClock
from shared.deny_list import APPLIED, DenyList
from shared.security_events import subject_hash
from shared.tokens import AccessToken

T0 = 1_700_000_000.0
LEEWAY = 30
VALUES = ["a", "b", "c"]  # few values, so events and tokens collide often
SUBS = ["user:a", "user:b", "user:c"]


@dataclass(frozen=True)
class Rule:
    kind: str
    value: str
    before: float | None
    expires: float


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    kind = draw(st.sampled_from(["jti", "kid", "sid", "fid", "sub"]))
    if kind == "sub":
        value = subject_hash(draw(st.sampled_from(SUBS)))
    else:
        value = draw(st.sampled_from(VALUES))
    before = None if kind in ("jti", "kid") else T0 + draw(st.integers(-20, 20))
    return Rule(kind, value, before, T0 + draw(st.integers(-40, 60)))


@st.composite
def tokens(draw: st.DrawFn) -> AccessToken:
    sub = draw(st.sampled_from(SUBS))
    jti = draw(st.sampled_from(VALUES))
    claims: dict[str, Any] = {"sub": sub, "jti": jti}
    for name in ("sid", "fid"):
        present = draw(st.one_of(st.none(), st.sampled_from(VALUES), st.integers(0, 2)))
        if present is not None:
            claims[name] = present
    iat = T0 + draw(st.integers(-20, 20))
    return AccessToken(
        issuer="https://issuer.example",
        subject=sub,
        audience=("photos",),
        expires_at=iat + 900,
        issued_at=iat,
        jwt_id=jti,
        client_id="app",
        scopes=frozenset(),
        kid=draw(st.sampled_from(VALUES)),
        claims=claims,
    )


def covers(rule: Rule, token: AccessToken, now: float) -> bool:
    """The spec's rule, written out independently of the implementation."""
    if now >= rule.expires + LEEWAY:
        return False
    if rule.kind == "jti":
        return token.jwt_id == rule.value
    if rule.kind == "kid":
        return token.kid == rule.value
    if rule.kind == "sub":
        claim: Any = subject_hash(token.subject)
    else:
        claim = token.claims.get(rule.kind)
    assert rule.before is not None
    return claim == rule.value and token.issued_at <= rule.before


def near(rule: Rule, token: AccessToken, delta: int) -> AccessToken:
    """``token`` made to hit ``rule``'s value, with ``iat`` next to its cut-off: the tokens
    where an off-by-one or a wrong claim shows."""
    claims = dict(token.claims)
    jti, kid, subject, iat = token.jwt_id, token.kid, token.subject, token.issued_at
    if rule.kind == "jti":
        jti = rule.value
    elif rule.kind == "kid":
        kid = rule.value
    elif rule.kind == "sub":
        subject = next(s for s in SUBS if subject_hash(s) == rule.value)
    else:
        claims[rule.kind] = rule.value
    if rule.before is not None:
        iat = rule.before + delta
    return AccessToken(
        issuer=token.issuer,
        subject=subject,
        audience=token.audience,
        expires_at=iat + 900,
        issued_at=iat,
        jwt_id=jti,
        client_id=token.client_id,
        scopes=token.scopes,
        kid=kid,
        claims=claims,
    )


# A step: add an event (with an event id, maybe one seen before), check a random token or one
# aimed at an event added before, let time pass (maybe to an event's expiry), or purge.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), rules(), st.integers(0, 15)),
        st.tuples(st.just("check"), tokens()),
        st.tuples(st.just("aim"), tokens(), st.integers(0, 100), st.integers(-1, 1)),
        st.tuples(st.just("wait"), st.sampled_from([0, 1, 5, 10, 29, 30, 31, 60])),
        st.tuples(st.just("until"), st.integers(0, 100), st.integers(-1, 0)),
        st.tuples(st.just("purge")),
    ),
    max_size=60,
)


def run(actions: list[tuple[Any, ...]], max_entries: int) -> None:
    clock = FakeClock(T0)
    deny = DenyList(max_entries=max_entries, leeway=LEEWAY, clock=clock)
    added: list[Rule] = []
    applied: list[Rule] = []
    for action in actions:
        if action[0] == "add":
            _, rule, event = action
            added.append(rule)
            outcome = deny.add(
                rule.kind,
                rule.value,
                before=rule.before,
                expires=rule.expires,
                event_id=f"event-{event}",
            )
            if outcome == APPLIED:
                applied.append(rule)
        elif action[0] in ("check", "aim"):
            token = action[1]
            if action[0] == "aim" and added:
                token = near(added[action[2] % len(added)], token, action[3])
            refused = deny.check(token)
            covering = [r for r in applied if covers(r, token, clock())]
            if refused is not None:
                assert any(r.kind == refused for r in covering), (refused, token, applied)
            elif deny.evicted == 0:
                assert not covering, (token, covering)
        elif action[0] == "wait":
            clock.advance(action[1])
        elif action[0] == "until" and added:  # to an event's last second of life, or its end
            rule = added[action[1] % len(added)]
            clock.now = max(clock.now, rule.expires + LEEWAY + action[2])
        else:
            deny.purge()
        assert len(deny) <= max_entries
        assert deny.active == (len(deny) > 0)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_deny_list_refuses_exactly_what_events_cover(actions: list[tuple[Any, ...]]) -> None:
    run(actions, max_entries=1000)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 4))
def test_a_small_deny_list_never_refuses_a_token_no_event_covers(
    actions: list[tuple[Any, ...]], max_entries: int
) -> None:
    run(actions, max_entries)
