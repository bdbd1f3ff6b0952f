"""Hypothesis strategies and checks for the input parsers, shared by the property tests
(tests/shared/test_properties.py, tests/issuer/test_form_properties.py,
tests/resource_service/test_body_properties.py) and the long run in bench/fuzz.py.

Each :class:`Target` pairs a strategy with a check that feeds one example to the real code and
fails on any outcome other than a result that can be served or one of Keyhouse's own errors
(:class:`shared.errors.KeyhouseError`) answered with a 4xx. The inputs are arbitrary text and
bytes, mutations of valid input (characters flipped, inserted, deleted), and JSON written as text
so that it can hold what a JSON library would never produce: escaped lone surrogates, surrogates
as UTF-8 bytes, numbers beyond a float or past Python's 4300-digit limit, deep nesting, duplicate
member names, invalid escapes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from issuer.forms import parse_form
from resource_service.app import check_json_media, error_response, parse_title
from shared.clock import FakeClock
from shared.errors import KeyhouseError
from shared.jws import b64url_encode
from shared.token_cache import TokenCache
from shared.verification import BearerAuthenticator
from tests.support.jwks_fakes import AUDIENCE, ISSUER, FakeIssuer, key, make_client, verifier

# Generated inputs are large and some strategies filter: neither is a problem here.
HEALTH_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# The default test runs: short (a few seconds per target). bench/fuzz.py runs the long ones.
TEST_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=HEALTH_CHECKS
)


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# -- JSON as text ---------------------------------------------------------------------------------

_HEX = "0123456789abcdefABCDEF"


def _escape(code: int, upper: bool) -> str:
    text = f"\\u{code:04x}"
    return text.upper().replace("\\U", "\\u") if upper else text


# Mostly valid JSON, so that examples get past the decoder to the checks behind it; broken
# syntax comes from the invalid pieces below, from mutated_bytes and from arbitrary bytes.
# One integer per escape (code and case), not builds() of two draws: fewer Hypothesis draws.
_valid_piece = st.one_of(
    st.characters(exclude_characters='"\\', exclude_categories=("Cs", "Cc")),
    st.integers(0, 0x1FFFF).map(lambda n: _escape(n >> 1, bool(n & 1))),  # any \uXXXX
    st.integers(0, 0xFFF).map(lambda n: _escape(0xD800 + (n >> 1), bool(n & 1))),  # surrogates
    st.sampled_from(["\\ud83d\\ude00", '\\"', "\\\\", "\\/", "\\b", "\\n", "\\t"]),
)
_invalid_piece = st.one_of(
    st.sampled_from(["\\x41", "\\u12", "\\uZZZZ", "\\", "\\U0001F600", "\x00", "\x1f", '"']),
    st.characters(categories=["Cs"]),  # a raw surrogate: ED A0 80 once encoded (surrogatepass)
)
# A string holding exactly one surrogate escape (lone unless a neighbour pairs it).
_surrogate_string = st.builds(
    lambda pre, code, upper, post: '"' + "".join(pre) + _escape(code, upper) + "".join(post) + '"',
    st.lists(_valid_piece, max_size=2),
    st.integers(0xD800, 0xDFFF),
    st.booleans(),
    st.lists(_valid_piece, max_size=2),
)
# Plain characters come as one draw of text (a list of one-character pieces costs a Hypothesis
# draw per character, the bulk of bench/fuzz.py's time); escapes and invalid pieces as lists.
_plain_text = st.text(
    alphabet=st.characters(exclude_characters='"\\', exclude_categories=("Cs", "Cc")), max_size=6
)
json_string = st.one_of(
    _plain_text,
    st.lists(_valid_piece, max_size=6).map("".join),
    st.lists(_valid_piece, max_size=6).map("".join),
    st.lists(st.one_of(_valid_piece, _invalid_piece), max_size=6).map("".join),
).map(lambda text: '"' + text + '"')

_digits = st.text(alphabet=string.digits, min_size=1, max_size=40)
_exponent = st.one_of(
    st.just(""), st.integers(-2000, 2000).map(lambda e: f"e{e}"), st.just("E+400")
)
json_number = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 4400).map(lambda n: "9" * n or "0"),  # past 4300 digits: ValueError in int()
    st.builds(
        lambda sign, whole, frac, exp: f"{sign}{int(whole)}{frac}{exp}",
        st.sampled_from(["", "-"]),
        _digits,
        st.one_of(st.just(""), _digits.map(lambda d: "." + d)),
        _exponent,
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "01", "1.", ".5", "-", "1e", "0x10", "+1"]),
)
json_scalar = st.one_of(
    st.sampled_from(["null", "true", "false"]), json_number, json_string, _surrogate_string
)

CLAIM_NAMES = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "title"]
HEADER_NAMES = ["alg", "typ", "kid", "crit", "jku", "jwk", "x5c", "x5u", "cty", "b64"]
json_name = st.one_of(
    st.sampled_from(CLAIM_NAMES + HEADER_NAMES).map(json.dumps), json_string, _surrogate_string
)
_separator = st.sampled_from([",", ", ", " ,\n"])


def _container(children: st.SearchStrategy[str], size: int) -> st.SearchStrategy[str]:
    array = st.builds(
        lambda items, sep: "[" + sep.join(items) + "]",
        st.lists(children, max_size=size),
        _separator,
    )
    obj = st.builds(
        lambda members, sep: "{" + sep.join(f"{k}:{v}" for k, v in members) + "}",
        st.lists(st.tuples(json_name, children), max_size=size),
        _separator,
    )
    return st.one_of(array, obj)


_deep = st.builds(
    lambda n, kind: ("[" * n + "]" * n) if kind else ('{"a":' * n + "1" + "}" * n),
    st.one_of(st.integers(0, 64), st.integers(0, 1500)),
    st.booleans(),
)
# Two levels of containers drawn directly (st.recursive costs several times as much per leaf);
# deeper nesting comes from _deep, up to 1500 levels.
_level1 = _container(json_scalar, 3)
_tree = st.one_of(json_scalar, _level1, _container(st.one_of(json_scalar, _level1), 3))
json_value = st.one_of(_tree, _tree, _tree, _tree, _deep)


# Strategies drawn inside the composites below are built once: Hypothesis validates a strategy
# the first time it is drawn from, which for a fresh one (and json_value's whole tree) costs more
# than the draw.
_ZERO_TO_NINE = st.integers(0, 9)
_ONE_OR_TWO = st.integers(1, 2)
_ONE_TO_FOUR = st.integers(1, 4)
_ZERO_TO_THREE = st.integers(0, 3)
_BYTE = st.integers(0, 255)
_EDIT = st.sampled_from(["flip", "insert", "delete"])
_ADDED_MEMBERS = st.lists(st.tuples(json_name, json_value), max_size=3)


@functools.cache
def _index(upto: int) -> st.SearchStrategy[int]:
    """integers(0, upto), one strategy per bound."""
    return st.integers(0, upto)


def _object_text(members: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{name}:{value}" for name, value in members) + "}"


@st.composite
def members_with_changes(draw: st.DrawFn, base: dict[str, Any]) -> str:
    """``base`` as JSON object text, often with members added (duplicate names included) and
    sometimes with members replaced or dropped, the new values arbitrary JSON text."""
    members = [(json.dumps(name), json.dumps(value)) for name, value in base.items()]
    weight = draw(_ZERO_TO_NINE)
    if weight >= 6:  # replace one or two members
        for _ in range(draw(_ONE_OR_TWO)):
            at = draw(_index(len(members) - 1))
            members[at] = (members[at][0], draw(json_value))
    if weight == 9 and members:  # drop one
        del members[draw(_index(len(members) - 1))]
    members += draw(_ADDED_MEMBERS)
    return _object_text(members)


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_bytes(draw: st.DrawFn, raw: st.SearchStrategy[bytes]) -> bytes:
    """``raw`` with a few bytes flipped, inserted or deleted."""
    data = bytearray(draw(raw))
    for _ in range(draw(_ZERO_TO_THREE)):
        op = draw(_EDIT)
        at = draw(_index(len(data)))
        byte = draw(_BYTE)
        if op == "insert":
            data.insert(at, byte)
        elif data:
            at = min(at, len(data) - 1)
            if op == "flip":
                data[at] = byte
            else:
                del data[at]
    return bytes(data)


_TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ ~\n\t"
_TOKEN_CHAR = st.one_of(st.sampled_from(_TOKEN_CHARS), st.characters(exclude_categories=()))


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    """``text`` with 1-4 characters flipped, inserted or deleted (mostly token characters)."""
    chars = list(text)
    for _ in range(draw(_ONE_TO_FOUR)):
        op = draw(_EDIT)
        at = draw(_index(max(len(chars) - 1, 0)))
        if op == "insert":
            chars.insert(at, draw(_TOKEN_CHAR))
        elif chars:
            if op == "flip":
                chars[at] = draw(_TOKEN_CHAR)
            else:
                del chars[at]
    return "".join(chars)


# -- the verifier ---------------------------------------------------------------------------------

CLOCK = FakeClock()


def claims() -> dict[str, Any]:
    now = int(CLOCK())
    return {
        "iss": ISSUER,
        "sub": "client:abc",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "j1",
        "client_id": "abc",
        "scope": "photos:read",
    }


def header() -> dict[str, Any]:
    return {"alg": "RS256", "typ": "at+jwt", "kid": key(0).kid}


def sign(header_raw: bytes, payload_raw: bytes) -> str:
    """A token signed by the key the verifier trusts, over exactly these bytes."""
    signing_input = f"{b64url_encode(header_raw)}.{b64url_encode(payload_raw)}"
    signature = key(0).private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


@functools.cache
def valid_token() -> str:
    return sign(json.dumps(header()).encode(), json.dumps(claims()).encode())


class _Verifier:
    """One BearerAuthenticator (token cache on) over a warmed JWKS client, on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        issuer = FakeIssuer()
        issuer.publish(key(0))
        jwks, _ = make_client(issuer, CLOCK)
        self.loop.run_until_complete(jwks.refresh())
        self.auth = BearerAuthenticator(verifier(CLOCK), jwks, cache=TokenCache(64, clock=CLOCK))

    def authenticate(self, authorization: str) -> Any:
        return self.loop.run_until_complete(self.auth.authenticate(authorization))


@functools.cache
def _verifier() -> _Verifier:
    return _Verifier()


def _refused(exc: KeyhouseError, statuses: tuple[int, ...]) -> None:
    """A refusal must be a client error, and its response (JSON body, the WWW-Authenticate
    challenge as latin-1) must be writable."""
    if exc.status_code not in statuses:
        raise AssertionError(f"{exc.status_code} {exc.error}: {exc.description}")
    error_response(exc, "photos")


def check_authorization(authorization: str) -> None:
    """What the resource service does with an Authorization header value, short of HTTP."""
    try:
        access = _verifier().authenticate(authorization)
    except KeyhouseError as exc:
        _refused(exc, (400, 401))
        return
    # /whoami writes the verified claims back as JSON (UTF-8, no NaN): it must be able to.
    JSONResponse({"claims": dict(access.claims)})


def check_token(token: str) -> None:
    check_authorization("Bearer " + token)


@functools.cache
def _changed_header_and_claims() -> tuple[st.SearchStrategy[str], st.SearchStrategy[str]]:
    return members_with_changes(header()), members_with_changes(claims())


@st.composite
def signed_tokens(draw: st.DrawFn) -> str:
    """Header and payload re-encoded with arbitrary JSON, then either signed by the trusted key
    (so the claims checks run on it) or given the valid token's signature."""
    head_changed, body_changed = _changed_header_and_claims()
    # Hypothesis does not pick one_of's branches evenly: weigh them by hand. Mostly the valid
    # header, so that most examples reach the payload and the claims checks.
    weight = draw(_ZERO_TO_NINE)
    head_strategy = head_changed if weight < 9 else json_value
    head = json.dumps(header()) if weight < 7 else draw(head_strategy)
    body = draw(body_changed if draw(_ZERO_TO_NINE) < 8 else json_value)
    head_raw, body_raw = to_bytes(head), to_bytes(body)
    if draw(_ZERO_TO_NINE) < 7:
        return sign(head_raw, body_raw)
    signature = valid_token().rsplit(".", 1)[1]
    return f"{b64url_encode(head_raw)}.{b64url_encode(body_raw)}.{signature}"


_latin1_header = st.binary(max_size=600).map(lambda b: b.decode("latin-1"))

VERIFIER_ARBITRARY = Target(
    "verifier-arbitrary",
    st.one_of(
        st.text(alphabet=st.characters(exclude_categories=()), max_size=200).map(
            lambda t: "Bearer " + t
        ),
        _latin1_header,
        st.text(alphabet=_TOKEN_CHARS, max_size=200).map(lambda t: "Bearer " + t),
        st.builds(
            lambda parts: "Bearer " + ".".join(b64url_encode(p) for p in parts),
            st.lists(st.binary(max_size=300), min_size=1, max_size=4),
        ),
    ),
    check_authorization,
)
VERIFIER_MUTATED = Target(
    "verifier-mutated",
    st.one_of(
        st.deferred(lambda: mutated_text(valid_token())),
        st.deferred(lambda: mutated_text("Bearer " + valid_token())),
    ),
    lambda value: check_authorization(value) if value.startswith("Bearer ") else check_token(value),
)
VERIFIER_SIGNED_JSON = Target("verifier-signed-json", signed_tokens(), check_token)


# -- the issuer's form parser --------------------------------------------------------------------

_form_piece = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "_-.~", max_size=8),
    st.sampled_from([f"%{a}{b}" for a in _HEX + "gG%" for b in _HEX + "zZ"]),  # one draw
    st.sampled_from(["+", "%", "=", "&", ";", "%00", "%ed%a0%80", "%ff", "%C3", "\u00e9"]),
    st.characters(exclude_categories=()),
)
# Half the time one draw of text over the form's own characters (one Hypothesis draw instead of
# one per piece), half the time pieces: percent escapes valid and not, separators, any character.
_form_text = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "_-.~%+=&;" + "\u00e9", max_size=12),
    st.lists(_form_piece, max_size=6).map("".join),
)
_form_pair = st.one_of(
    st.tuples(
        st.sampled_from(["grant_type", "scope", "client_id", "password", "token"]), _form_text
    ),
    st.tuples(_form_text, _form_text),
)
form_text = st.builds(
    lambda pairs, sep: sep.join(f"{n}={v}" for n, v in pairs),
    st.lists(_form_pair, max_size=5),
    st.sampled_from(["&", "&&", ";", ""]),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            " application/x-www-form-urlencoded ;",
            "application/json",
            "",
            ";",
        ]
    ),
    st.text(max_size=60),
    _latin1_header,
)


def check_form(example: tuple[bytes, str | None, str]) -> None:
    body, content_type, query = example
    try:
        form = parse_form(body, content_type, query)
    except KeyhouseError as exc:
        _refused(exc, (400,))
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())


FORM = Target(
    "issuer-form",
    st.tuples(
        st.one_of(
            st.binary(max_size=400),
            form_text.map(to_bytes),
            mutated_bytes(form_text.map(to_bytes)),
        ),
        content_types,
        st.one_of(st.just(""), form_text, _latin1_header, st.text(max_size=100)),
    ),
    check_form,
)


# -- the resource service's JSON body ------------------------------------------------------------


def check_body(example: tuple[str | None, bytes]) -> None:
    content_type, body = example
    try:
        check_json_media(content_type)
        title = parse_title(body)
    except KeyhouseError as exc:
        _refused(exc, (400,))
        return
    # The title is stored (SQLite, UTF-8) and sent back as JSON.
    title.encode("utf-8")
    JSONResponse({"title": title})


_title_object = members_with_changes({"title": "a title"})
BODY = Target(
    "resource-body",
    st.tuples(
        st.one_of(
            st.just("application/json"),
            st.sampled_from(["application/JSON; charset=utf-8", "text/plain", ""]),
            st.none(),
            st.text(max_size=40),
        ),
        st.one_of(
            st.binary(max_size=400),
            _title_object.map(to_bytes),
            json_value.map(to_bytes),
            mutated_bytes(_title_object.map(to_bytes)),
        ),
    ),
    check_body,
)

TARGETS: dict[str, Target] = {
    t.name: t for t in (VERIFIER_ARBITRARY, VERIFIER_MUTATED, VERIFIER_SIGNED_JSON, FORM, BODY)
}
