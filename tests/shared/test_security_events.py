"""shared/security_events: the payloads the issuer builds, their signature, and the strict reading
of a payload into a deny rule (one negative test per rule)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import RSAKey

from shared import security_events as se
from shared.errors import KeyhouseError
from shared.keys import generate_signing_key

ISSUER = "https://issuer.example"
NOW = 1_800_000_000


def test_subject_hash_is_unpadded_base64url_sha256() -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"alice").digest())
    assert se.subject_hash("alice") == expected.decode().rstrip("=")
    assert len(se.subject_hash("bob")) == 43
    assert se.subject_hash("alice") != se.subject_hash("alice ")


BUILDERS: list[tuple[Callable[..., dict[str, Any]], dict[str, Any], str, str, str, bool]] = [
    (se.key_revoked, {"kid": "k1"}, se.KEY_REVOKED, "kid", "k1", False),
    (se.token_revoked, {"token_jti": "J" * 22}, se.TOKEN_REVOKED, "jti", "J" * 22, False),
    (se.family_ended, {"family_id": "fam"}, se.SESSION_REVOKED, "fid", "fam", True),
    (se.session_ended, {"sid": "s-1"}, se.SESSION_REVOKED, "sid", "s-1", True),
    (se.user_disabled, {"sub": "u1"}, se.ACCOUNT_DISABLED, "sub", se.subject_hash("u1"), True),
    (se.password_changed, {"sub": "u1"}, se.CREDENTIAL_CHANGE, "sub", se.subject_hash("u1"), True),
]


@pytest.mark.parametrize(
    ("build", "ids", "event_type", "claim", "value", "timed"),
    BUILDERS,
    ids=[b[0].__name__ for b in BUILDERS],
)
def test_each_builder_makes_a_payload_that_reads_back_as_its_rule(
    build: Callable[..., dict[str, Any]],
    ids: dict[str, Any],
    event_type: str,
    claim: str,
    value: str,
    timed: bool,
) -> None:
    claims = build(issuer=ISSUER, now=NOW, exp=NOW + 300, **ids)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == ISSUER + "/events"
    assert claims["iat"] == NOW
    assert len(claims["jti"]) >= 22
    (event,) = claims["events"].values()
    assert list(claims["events"]) == [event_type]
    assert event["subject"] == {"format": "opaque", "id": value}
    assert event["keyhouse_claim"] == claim
    assert event["keyhouse_exp"] == NOW + 300
    assert event["event_timestamp"] == NOW
    assert isinstance(event["reason_admin"]["en"], str)
    rule = se.rule_from_claims(claims)
    assert rule == se.DenyRule(
        claim=claim,  # type: ignore[arg-type]
        value=value,
        before=NOW if timed else None,
        expires=NOW + 300,
    )


def test_each_payload_has_its_own_jti() -> None:
    first = se.key_revoked(issuer=ISSUER, now=NOW, kid="k", exp=NOW)
    second = se.key_revoked(issuer=ISSUER, now=NOW, kid="k", exp=NOW)
    assert first["jti"] != second["jti"]


def test_sign_set_header_and_signature() -> None:
    key = generate_signing_key()
    claims = se.session_ended(issuer=ISSUER, now=NOW, sid="s", exp=NOW + 1)
    token = se.sign_set(claims, key)
    result = jws.deserialize_compact(token, RSAKey.import_key(key.public_key), algorithms=["RS256"])
    assert result.headers() == {"alg": "RS256", "typ": "secevent+jwt", "kid": key.kid}
    assert json.loads(result.payload) == claims
    other = generate_signing_key()
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, RSAKey.import_key(other.public_key), algorithms=["RS256"])


def test_invalid_security_event_is_a_keyhouse_error() -> None:
    assert issubclass(se.InvalidSecurityEvent, KeyhouseError)
    assert se.InvalidSecurityEvent("x").to_dict()["error"] == "invalid_request"


# --- one negative test per rule ----------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return se.user_disabled(issuer=ISSUER, now=NOW, sub="u1", exp=NOW + 300)


def _event(claims: dict[str, Any]) -> dict[str, Any]:
    (event,) = claims["events"].values()
    assert isinstance(event, dict)
    return event


def _refused(claims: Any, message: str) -> None:
    with pytest.raises(se.InvalidSecurityEvent, match=message):
        se.rule_from_claims(claims)


def test_payload_not_an_object() -> None:
    _refused(["not", "a", "mapping"], "not an object")


@pytest.mark.parametrize("iss", [None, 7, "", "ftp://issuer.example", "h" * 3000])
def test_iss_missing_or_malformed(iss: Any) -> None:
    claims = _valid()
    if iss is None:
        del claims["iss"]
    else:
        claims["iss"] = iss
    _refused(claims, "iss")


@pytest.mark.parametrize("aud", [None, ISSUER, [ISSUER + "/events"], ISSUER + "/events/"])
def test_aud_not_the_events_endpoint(aud: Any) -> None:
    claims = _valid()
    claims["aud"] = aud
    _refused(claims, "aud")


@pytest.mark.parametrize("iat", [None, True, "1", 1.5, -1, 2**60])
def test_iat_not_a_non_negative_integer(iat: Any) -> None:
    claims = _valid()
    claims["iat"] = iat
    _refused(claims, "iat")


@pytest.mark.parametrize("jti", [None, 12, "short", "x" * 200, "a" * 21 + "!"])
def test_jti_missing_or_malformed(jti: Any) -> None:
    claims = _valid()
    claims["jti"] = jti
    _refused(claims, "jti")


def test_no_event() -> None:
    claims = _valid()
    claims["events"] = {}
    _refused(claims, "exactly one event")


def test_two_events() -> None:
    claims = _valid()
    claims["events"][se.KEY_REVOKED] = _event(_valid())
    _refused(claims, "exactly one event")


def test_events_not_an_object() -> None:
    claims = _valid()
    claims["events"] = [1]
    _refused(claims, "exactly one event")


def test_unknown_event_type() -> None:
    claims = _valid()
    claims["events"] = {"https://example.com/other": _event(claims)}
    _refused(claims, "type is not known")


def test_event_not_an_object() -> None:
    claims = _valid()
    claims["events"] = {se.ACCOUNT_DISABLED: "disabled"}
    _refused(claims, "event is not an object")


@pytest.mark.parametrize(
    ("event_type", "claim"),
    [
        (se.ACCOUNT_DISABLED, "jti"),
        (se.KEY_REVOKED, "sub"),
        (se.TOKEN_REVOKED, "sid"),
        (se.SESSION_REVOKED, "kid"),
        (se.CREDENTIAL_CHANGE, "fid"),
        (se.SESSION_REVOKED, None),
        (se.SESSION_REVOKED, ["sid"]),
    ],
)
def test_keyhouse_claim_inconsistent_with_type(event_type: str, claim: Any) -> None:
    claims = se.session_ended(issuer=ISSUER, now=NOW, sid="s", exp=NOW)
    event = _event(claims)
    event["keyhouse_claim"] = claim
    claims["events"] = {event_type: event}
    _refused(claims, "keyhouse_claim")


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "s",
        {"format": "email", "id": "s"},
        {"format": "opaque"},
        {"format": "opaque", "id": "s", "extra": 1},
    ],
)
def test_subject_not_opaque(subject: Any) -> None:
    claims = se.session_ended(issuer=ISSUER, now=NOW, sid="s", exp=NOW)
    _event(claims)["subject"] = subject
    _refused(claims, "subject is not an opaque")


@pytest.mark.parametrize("value", [5, "", "has space", "x" * 257, "ünïcode"])
def test_subject_id_malformed(value: Any) -> None:
    claims = se.session_ended(issuer=ISSUER, now=NOW, sid="s", exp=NOW)
    _event(claims)["subject"]["id"] = value
    _refused(claims, "subject id")


@pytest.mark.parametrize("value", ["alice", "A" * 42, "A" * 44, "+" * 43])
def test_sub_subject_must_be_a_hash(value: str) -> None:
    claims = _valid()
    _event(claims)["subject"]["id"] = value
    _refused(claims, "subject id")


@pytest.mark.parametrize("member", ["event_timestamp", "keyhouse_exp"])
@pytest.mark.parametrize("value", [None, False, "1", 1.0, -5, 2**53])
def test_event_times_are_non_negative_integers(member: str, value: Any) -> None:
    claims = _valid()
    _event(claims)[member] = value
    _refused(claims, member)


@pytest.mark.parametrize(
    "reasons",
    [
        None,
        "text",
        {},
        {"en": 5},
        {"en": "x" * 201},
        {f"l{i}": "x" for i in range(9)},
        {"x" * 36: "y"},
    ],
)
def test_reason_admin_malformed(reasons: Any) -> None:
    claims = _valid()
    _event(claims)["reason_admin"] = reasons
    _refused(claims, "reason_admin")


def test_unknown_top_level_members_are_ignored() -> None:
    claims = copy.deepcopy(_valid())
    claims["txn"] = "abc"
    assert se.rule_from_claims(claims).claim == "sub"
