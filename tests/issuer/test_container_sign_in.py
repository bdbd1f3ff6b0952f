"""The container's sign-in parts: the stores are wired to the app's database and clock, and the
sign-in key is derived from the key-encryption secret (the same on every replica)."""

from __future__ import annotations

from issuer.container import sign_in_key
from tests.issuer.conftest import SECRET_KEY, App, MakeApp


def test_sign_in_stores_and_key(app: App, make_app: MakeApp) -> None:
    issuer = app.issuer
    assert issuer.sign_in_key == sign_in_key(SECRET_KEY)
    assert len(issuer.sign_in_key) == 32
    assert sign_in_key(SECRET_KEY + "x") != issuer.sign_in_key
    # Not the key that seals the signing keys (another HKDF label), nor the secret itself.
    assert SECRET_KEY.encode() not in issuer.sign_in_key
    replica = make_app()
    assert replica.issuer.sign_in_key == issuer.sign_in_key
    # The stores share the app's database: a session made by one replica is found by the other.
    cookie, session = issuer.sessions.create("u1", app.clock())
    found = replica.issuer.sessions.find(cookie, app.clock())
    assert found is not None
    assert found.sid == session.sid
    assert (issuer.sessions.idle_ttl, issuer.sessions.ttl, issuer.codes.ttl) == (1800, 28800, 60)
    configured = make_app(session_idle_ttl=60, session_ttl=120, code_ttl=30).issuer
    assert (configured.sessions.idle_ttl, configured.sessions.ttl, configured.codes.ttl) == (
        60,
        120,
        30,
    )
    assert issuer.introspector.revoked is issuer.revoked
    assert issuer.codes.revoked is issuer.revoked
    assert issuer.tokens.codes is issuer.codes  # /token redeems the codes /authorize issues
