"""issuer/tickets.py: signed, expiring tickets and the signed double-submit CSRF token."""

from __future__ import annotations

import base64
import json

import pytest

from issuer.tickets import MAX_TICKET, TICKET_TTL, InvalidTicket, Tickets

KEY = bytes(range(32))
NOW = 1_700_000_000.0


@pytest.fixture
def tickets() -> Tickets:
    return Tickets(KEY)


def test_round_trip(tickets: Tickets) -> None:
    ticket = tickets.seal("login", {"client_id": "c1", "scopes": ["a", "b"]}, now=NOW)
    assert tickets.open("login", ticket, now=NOW) == {"client_id": "c1", "scopes": ["a", "b"]}
    assert tickets.open("login", ticket, now=NOW + TICKET_TTL - 1)["client_id"] == "c1"


def test_expired_ticket_is_refused(tickets: Tickets) -> None:
    ticket = tickets.seal("login", {"x": 1}, now=NOW)
    with pytest.raises(InvalidTicket, match="expired"):
        tickets.open("login", ticket, now=NOW + TICKET_TTL)


def test_ticket_for_another_purpose_is_refused(tickets: Tickets) -> None:
    ticket = tickets.seal("login", {"x": 1}, now=NOW)
    with pytest.raises(InvalidTicket, match="purpose"):
        tickets.open("consent", ticket, now=NOW)


def _payload(ticket: str) -> dict[str, object]:
    payload = ticket.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _with_payload(ticket: str, body: dict[str, object]) -> str:
    version, _, mac = ticket.split(".")
    raw = json.dumps(body, separators=(",", ":")).encode()
    return f"{version}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{mac}"


def test_altered_payload_is_refused(tickets: Tickets) -> None:
    ticket = tickets.seal("login", {"client_id": "c1"}, now=NOW)
    body = _payload(ticket)
    for changed in (
        {**body, "d": {"client_id": "evil"}},
        {**body, "exp": int(NOW) + 10 * TICKET_TTL},
        {**body, "p": "consent"},
    ):
        with pytest.raises(InvalidTicket, match="signature"):
            tickets.open("login", _with_payload(ticket, changed), now=NOW)


def test_another_keys_ticket_is_refused(tickets: Tickets) -> None:
    forged = Tickets(bytes(32)).seal("login", {"client_id": "c1"}, now=NOW)
    with pytest.raises(InvalidTicket, match="signature"):
        tickets.open("login", forged, now=NOW)


@pytest.mark.parametrize(
    "ticket",
    [
        None,
        "",
        "v1",
        "v1.abc",
        "v2.abc.def",
        "v1.abc.d!f",
        "v1.é.abc",
        "v1.abc.def.ghi",
        "v1." + "A" * MAX_TICKET + ".abc",
    ],
)
def test_malformed_tickets_are_refused(tickets: Tickets, ticket: str | None) -> None:
    with pytest.raises(InvalidTicket):
        tickets.open("login", ticket, now=NOW)


def test_truncated_mac_is_refused(tickets: Tickets) -> None:
    ticket = tickets.seal("login", {"x": 1}, now=NOW)
    with pytest.raises(InvalidTicket):
        tickets.open("login", ticket[:-4], now=NOW)


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Tickets(b"short")


def test_csrf_token_matches_only_its_cookie(tickets: Tickets) -> None:
    cookie = tickets.new_csrf_cookie()
    assert tickets.is_csrf_cookie(cookie)
    token = tickets.csrf_token(cookie)
    assert tickets.csrf_matches(cookie, token)
    other = tickets.new_csrf_cookie()
    assert other != cookie
    assert not tickets.csrf_matches(other, token)  # another browser's token
    assert not tickets.csrf_matches(cookie, None)  # no token in the form
    assert not tickets.csrf_matches(None, token)  # no cookie
    assert not tickets.csrf_matches(cookie, token[:-1])
    assert not tickets.csrf_matches(cookie, "é" * 43)
    assert not tickets.csrf_matches(cookie, cookie)  # the cookie itself is not the token
    # A token for this cookie under another key (another issuer) does not match.
    assert not tickets.csrf_matches(cookie, Tickets(bytes(32)).csrf_token(cookie))


@pytest.mark.parametrize("cookie", ["", "short", "A" * 44, "A" * 42 + "!", "é" * 43])
def test_malformed_csrf_cookie_matches_nothing(tickets: Tickets, cookie: str) -> None:
    assert not tickets.is_csrf_cookie(cookie)
    assert not tickets.csrf_matches(cookie, "A" * 43)
