"""Clients of the sign-in flow: registration rules (issuer/accounts.py ``create_client``), public
clients' authentication (method ``none``, issuer/client_auth.py) at /token, /revoke and
/introspect, and introspection of a revoked access token's ``jti``."""

from __future__ import annotations

import pytest

from issuer.accounts import AccountStore, redirect_uri_problem
from issuer.db import clients
from shared.errors import ConfigurationError
from shared.tokens import TokenVerifier
from tests.issuer.conftest import App, Creds, basic

CODE = ["authorization_code", "refresh_token"]
CB = "https://app.example/callback"


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?x=1",
        "http://127.0.0.1:8003/callback",
        "http://[::1]/cb",
        "http://localhost:9000/cb",
    ],
)
def test_good_redirect_uris(uri: str) -> None:
    assert redirect_uri_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://app.example/cb", "http:// only"),
        ("http://127.0.0.2/cb", "http:// only"),
        ("/callback", "absolute"),
        ("app.example/cb", "absolute"),
        ("https:///cb", "absolute"),
        ("https://app.example/cb#frag", "fragment"),
        ("https://app.example/cb#", "fragment"),
        ("ftp://app.example/cb", "absolute"),
        ("javascript:alert(1)", "absolute"),
        ("https://app.example/a b", "spaces"),
        ("https://app.example/\u00e9", "ASCII"),
        ("https://app.example:port/cb", "not a valid URI"),
        ("", "1-2000"),
        ("https://app.example/" + "a" * 2000, "1-2000"),
    ],
)
def test_bad_redirect_uris_are_refused(app: App, uri: str, fragment: str) -> None:
    problem = redirect_uri_problem(uri)
    assert problem is not None
    assert fragment in problem
    with pytest.raises(ConfigurationError, match="--redirect-uri") as refused:
        _create(app, redirect_uris=[uri])
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="--post-logout-redirect-uri"):
        _create(app, redirect_uris=[CB], post_logout_redirect_uris=[uri])


def _create(app: App, *, grants: list[str] | None = None, **kwargs: object) -> object:
    accounts: AccountStore = app.issuer.tokens.accounts
    return accounts.create_client(  # type: ignore[call-overload]
        name="web",
        scopes=frozenset({"openid", "photos:read"}),
        audiences=["photos"],
        grant_types=grants or CODE,
        now=app.clock(),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("grants", "kwargs", "fragment"),
    [
        (CODE, {}, "needs at least one --redirect-uri"),
        (["client_credentials"], {"redirect_uris": [CB]}, "add --grant authorization_code"),
        (["password"], {"post_logout_redirect_uris": [CB]}, "add --grant authorization_code"),
        (
            ["authorization_code", "client_credentials"],
            {"redirect_uris": [CB], "public": True},
            "not client_credentials",
        ),
        (["password", "refresh_token"], {"public": True}, "not password"),
        (CODE, {"redirect_uris": [CB], "public": True, "client_secret": "s" * 43}, "no secret"),
    ],
)
def test_registration_rules(
    app: App, grants: list[str], kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        _create(app, grants=grants, **kwargs)


def test_registered_fields_round_trip(app: App) -> None:
    accounts: AccountStore = app.issuer.tokens.accounts
    client, secret = accounts.create_client(
        name="spa",
        scopes=frozenset({"openid"}),
        audiences=["photos"],
        grant_types=CODE,
        now=app.clock(),
        client_id="spa",
        redirect_uris=[CB, "http://127.0.0.1:9/cb", CB],
        post_logout_redirect_uris=["https://app.example/bye"],
        public=True,
        first_party=True,
    )
    assert secret is None
    again = accounts.get_client("spa")
    assert again == client
    assert client.redirect_uris == (CB, "http://127.0.0.1:9/cb")
    assert client.post_logout_redirect_uris == ("https://app.example/bye",)
    assert (client.public, client.first_party) == (True, True)
    assert client.token_endpoint_auth_method == "none"
    confidential, secret = accounts.create_client(
        name="web",
        scopes=frozenset({"openid"}),
        audiences=["photos"],
        grant_types=CODE,
        now=app.clock(),
        redirect_uris=[CB],
    )
    assert secret is not None
    assert len(secret) >= 43
    assert (confidential.public, confidential.first_party) == (False, False)


# -- public clients at the endpoints ----------------------------------------------------------


def _public_with_refresh_token(app: App) -> tuple[str, str]:
    accounts: AccountStore = app.issuer.tokens.accounts
    client, _ = accounts.create_client(
        name="spa",
        scopes=frozenset({"photos:read"}),
        audiences=["photos"],
        grant_types=CODE,
        now=app.clock(),
        client_id="spa",
        redirect_uris=[CB],
        public=True,
    )
    user_id = app.new_user("alice")
    token = app.issuer.tokens.refresh_tokens.issue(
        client_id=client.client_id,
        user_id=user_id,
        scopes=frozenset({"photos:read"}),
        audience="photos",
        now=app.clock(),
        sid="sid-1",
    )
    return client.client_id, token


def test_public_client_refreshes_with_its_client_id_alone(app: App) -> None:
    client_id, token = _public_with_refresh_token(app)
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token}
    answer = app.post("/token", form)
    assert answer.status_code == 200, answer.text
    assert answer.json()["refresh_token"] != token
    # Its refresh tokens rotate: the old one is spent.
    assert app.post("/token", form).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("how", ["secret in the body", "basic header", "empty secret"])
def test_a_public_client_presenting_a_secret_fails(app: App, how: str) -> None:
    client_id, token = _public_with_refresh_token(app)
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token}
    headers: dict[str, str] = {}
    if how == "secret in the body":
        form["client_secret"] = "guess"
    elif how == "empty secret":
        form["client_secret"] = ""
    else:
        headers = basic(client_id, "")
    answer = app.post("/token", form, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_method_none_does_not_authenticate_a_confidential_client(app: App) -> None:
    creds = app.new_client()
    for form in (
        {"grant_type": "client_credentials", "client_id": creds.client_id},
        {"grant_type": "client_credentials", "client_id": "c-unknown"},
    ):
        answer = app.post("/token", form)
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_public_client_may_revoke_but_not_introspect(app: App) -> None:
    client_id, token = _public_with_refresh_token(app)
    asked = app.post("/introspect", {"client_id": client_id, "token": token})
    assert (asked.status_code, asked.json()["error"]) == (401, "invalid_client")
    revoked = app.post("/revoke", {"client_id": client_id, "token": token})
    assert revoked.status_code == 200
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token}
    assert app.post("/token", form).json()["error"] == "invalid_grant"


def test_a_disabled_public_client_fails(app: App) -> None:
    client_id, token = _public_with_refresh_token(app)
    with app.issuer.tokens.accounts.engine.begin() as conn:
        conn.execute(clients.update().values(disabled=True))
    app.issuer.tokens._client_cache.clear()  # the client record is cached for 2 s
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token}
    assert app.post("/token", form).status_code == 401


# -- revoked access tokens at introspection ---------------------------------------------------


def test_introspection_reports_a_revoked_jti_inactive(app: App) -> None:
    creds: Creds = app.new_client()
    answer = app.token(creds, grant_type="client_credentials", audience="photos")
    access = answer.json()["access_token"]
    active = app.introspect(creds, access)
    assert active["active"] is True
    other = app.token(creds, grant_type="client_credentials", audience="photos").json()
    claims = TokenVerifier(issuer=app.settings.issuer_url, audience="photos").parse(access).payload
    app.issuer.revoked.revoke(claims["jti"], float(claims["exp"]))
    assert app.introspect(creds, access) == {"active": False}
    assert app.introspect(creds, other["access_token"])["active"] is True
