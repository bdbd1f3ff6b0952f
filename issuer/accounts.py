"""Clients (RFC 6749 §2) and users, stored in the database.

Client secrets are random 256-bit values, so a fast SHA-256 is the right hash for them
(nothing to brute-force); user passwords are low-entropy and use argon2id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from issuer.db import clients, users
from issuer.passwords import hash_password, verify_password
from shared.errors import ConfigurationError
from shared.protocol import GRANT_TYPES
from shared.scopes import format_scope, parse_scope

MAX_USERNAME = 200
MAX_REDIRECT_URI = 2000
# Grants a public client (no secret, token_endpoint_auth_method none) may use: those where a
# person signs in; client_credentials and password would hand tokens to anyone with the id.
PUBLIC_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
# http is allowed for these hosts only (RFC 8252 §7.3 loopback redirects; OAuth 2.1 §2.3.1).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_DUMMY_SECRET_HASH = hashlib.sha256(b"keyhouse-dummy-client-secret").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    grant_types: frozenset[str]
    disabled: bool
    # Exact redirect URIs (RFC 6749 §3.1.2; compared as strings, no wildcards), in the order
    # registered; post-logout redirect URIs (OIDC RP-Initiated Logout 1.0 §3).
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    public: bool = False  # no secret: token_endpoint_auth_method "none" (RFC 7591 §2)
    first_party: bool = False  # its users are not asked for consent
    # RFC 9449 §5.2: every token request must carry a DPoP proof (the tokens are all bound).
    dpop_bound_access_tokens: bool = False

    @classmethod
    def from_row(cls, row: RowMapping) -> Client:
        return cls(
            client_id=row["client_id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            scopes=parse_scope(row["scopes"]),
            audiences=tuple(row["audiences"].split()),
            grant_types=frozenset(row["grant_types"].split()),
            disabled=bool(row["disabled"]),
            redirect_uris=tuple(row["redirect_uris"].split()),
            post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"].split()),
            public=bool(row["public"]),
            first_party=bool(row["first_party"]),
            dpop_bound_access_tokens=bool(row["dpop_bound_access_tokens"]),
        )

    @property
    def token_endpoint_auth_method(self) -> str:
        return "none" if self.public else "client_secret_basic"

    @property
    def subject(self) -> str:
        """``sub`` for client_credentials tokens; users are ``user:...``, so the two never meet."""
        return f"client:{self.client_id}"


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    password_hash: str
    scopes: frozenset[str]
    disabled: bool

    @classmethod
    def from_row(cls, row: RowMapping) -> User:
        return cls(
            user_id=row["user_id"],
            username=row["username"],
            password_hash=row["password_hash"],
            scopes=parse_scope(row["scopes"]),
            disabled=bool(row["disabled"]),
        )

    @property
    def subject(self) -> str:
        return user_subject(self.user_id)


def user_subject(user_id: str) -> str:
    """``sub`` of a user's tokens."""
    return f"user:{user_id}"


def check_client_secret(client: Client | None, presented: str) -> bool:
    """Constant-time comparison; an unknown client costs the same as a wrong secret. A public
    client has no secret: no presented secret authenticates it."""
    expected = (
        client.secret_hash if client is not None and not client.public else _DUMMY_SECRET_HASH
    )
    ok = hmac.compare_digest(hash_secret(presented), expected)
    return ok and client is not None and not client.public and not client.disabled


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be registered as a redirect URI, or None when it can.

    Absolute, no fragment (RFC 6749 §3.1.2), ``https``, or ``http`` for a loopback host only
    (127.0.0.1, [::1], localhost: RFC 8252 §7.3, OAuth 2.1 §2.3.1); printable ASCII without
    spaces (URIs are stored space-separated and compared as exact strings).
    """
    if not uri or len(uri) > MAX_REDIRECT_URI:
        return f"must be 1-{MAX_REDIRECT_URI} characters"
    if not (uri.isascii() and uri.isprintable()) or " " in uri:
        return "must be printable ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URI"
    if "#" in uri:
        return "must not contain a fragment (#...)"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https:// URI (http:// only for 127.0.0.1, [::1], localhost)"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "may use http:// only for 127.0.0.1, [::1] or localhost; use https://"
    return None


def _check_redirect_uris(option: str, uris: Sequence[str]) -> tuple[str, ...]:
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise ConfigurationError(f"{option} {uri[:100]!r} {problem}")
    return tuple(dict.fromkeys(uris))


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- clients ----------------------------------------------------------------------------

    @overload
    def create_client(
        self,
        *,
        name: str,
        scopes: frozenset[str],
        audiences: list[str],
        grant_types: list[str],
        now: float,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: Sequence[str] = (),
        post_logout_redirect_uris: Sequence[str] = (),
        public: Literal[False] = False,
        first_party: bool = False,
        dpop_bound_access_tokens: bool = False,
    ) -> tuple[Client, str]: ...

    @overload
    def create_client(
        self,
        *,
        name: str,
        scopes: frozenset[str],
        audiences: list[str],
        grant_types: list[str],
        now: float,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: Sequence[str] = (),
        post_logout_redirect_uris: Sequence[str] = (),
        public: bool,
        first_party: bool = False,
        dpop_bound_access_tokens: bool = False,
    ) -> tuple[Client, str | None]: ...

    def create_client(
        self,
        *,
        name: str,
        scopes: frozenset[str],
        audiences: list[str],
        grant_types: list[str],
        now: float,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: Sequence[str] = (),
        post_logout_redirect_uris: Sequence[str] = (),
        public: bool = False,
        first_party: bool = False,
        dpop_bound_access_tokens: bool = False,
    ) -> tuple[Client, str | None]:
        """Register a client; returns it and its secret (None for a public client).

        Raises :class:`ConfigurationError` with one line naming the option at fault.
        """
        if not name.strip():
            raise ConfigurationError("--name must not be empty")
        if not audiences:
            raise ConfigurationError("at least one --audience is required")
        for aud in audiences:
            if not aud or any(c.isspace() for c in aud):
                raise ConfigurationError(f"invalid audience {aud!r}")
        unknown = [g for g in grant_types if g not in GRANT_TYPES]
        if unknown or not grant_types:
            raise ConfigurationError(
                f"--grant must be one of {', '.join(GRANT_TYPES)}"
                + (f" (got {unknown[0]!r})" if unknown else "")
            )
        redirects = _check_redirect_uris("--redirect-uri", redirect_uris)
        after_logout = _check_redirect_uris("--post-logout-redirect-uri", post_logout_redirect_uris)
        if public:
            refused = [g for g in dict.fromkeys(grant_types) if g not in PUBLIC_GRANT_TYPES]
            if refused:
                raise ConfigurationError(
                    f"a public client (--public) has no secret and may use only the "
                    f"authorization_code and refresh_token grants (not {refused[0]})"
                )
            if client_secret is not None:
                raise ConfigurationError("a public client (--public) has no secret")
        code_flow = "authorization_code" in grant_types
        if code_flow and not redirects:
            raise ConfigurationError("--grant authorization_code needs at least one --redirect-uri")
        if not code_flow and (redirects or after_logout):
            raise ConfigurationError(
                "redirect URIs are for the authorization_code grant: add --grant authorization_code"
            )
        client_id = client_id or "c-" + secrets.token_urlsafe(12)
        secret = None if public else client_secret or secrets.token_urlsafe(32)  # 256 bits
        row = {
            "client_id": client_id,
            "name": name,
            # A public client's hash matches no secret (a SHA-256 hex digest is never empty).
            "secret_hash": hash_secret(secret) if secret is not None else "",
            "scopes": format_scope(scopes),
            "audiences": " ".join(dict.fromkeys(audiences)),
            "grant_types": " ".join(dict.fromkeys(grant_types)),
            "created_at": now,
            "disabled": False,
            "redirect_uris": " ".join(redirects),
            "post_logout_redirect_uris": " ".join(after_logout),
            "public": public,
            "first_party": first_party,
            "dpop_bound_access_tokens": dpop_bound_access_tokens,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(clients.insert().values(**row))
        except IntegrityError:
            raise ConfigurationError(f"client {client_id!r} already exists") from None
        client = self.get_client(client_id)
        assert client is not None
        return client, secret

    def get_client(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(clients).where(clients.c.client_id == client_id))
                .mappings()
                .first()
            )
        return Client.from_row(row) if row else None

    def all_scopes(self) -> list[str]:
        """Every scope some client may request, for the metadata's ``scopes_supported``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(clients.c.scopes)).scalars().all()
        return sorted({s for row in rows for s in row.split()})

    # -- users ------------------------------------------------------------------------------

    def create_user(
        self, *, username: str, password: str, scopes: frozenset[str], now: float
    ) -> User:
        if not username or len(username) > MAX_USERNAME or any(c.isspace() for c in username):
            raise ConfigurationError(f"USERNAME must be 1-{MAX_USERNAME} characters without spaces")
        _check_password(password)
        row = {
            "user_id": uuid.uuid4().hex,
            "username": username,
            "password_hash": hash_password(password),
            "scopes": format_scope(scopes),
            "created_at": now,
            "disabled": False,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(users.insert().values(**row))
        except IntegrityError:
            raise ConfigurationError(f"user {username!r} already exists") from None
        user = self.get_user(username)
        assert user is not None
        return user

    def get_user(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
        return User.from_row(row) if row else None

    def get_user_by_id(self, user_id: str, *, conn: Connection | None = None) -> User | None:
        """The user, read through ``conn`` when the caller is inside a transaction."""
        query = select(users).where(users.c.user_id == user_id)
        if conn is not None:
            row = conn.execute(query).mappings().first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).mappings().first()
        return User.from_row(row) if row else None

    def find_login(self, username: str) -> User | None:
        """The user a login names; None also for a name too long to be anyone's."""
        return self.get_user(username) if len(username) <= MAX_USERNAME else None

    def replace_password_hash(self, user: User, new_hash: str) -> bool:
        """Store ``new_hash`` (the same password, hashed with today's parameters) unless the
        password changed since ``user`` was read. True if stored."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.user_id == user.user_id)
                .where(users.c.password_hash == user.password_hash)
                .values(password_hash=new_hash)
            )
        return bool(result.rowcount)

    def set_user_disabled(self, username: str, disabled: bool) -> User:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(users).where(users.c.username == username).values(disabled=disabled)
            )
        if result.rowcount == 0:
            raise ConfigurationError(f"no user {username!r}")
        user = self.get_user(username)
        assert user is not None
        return user

    def set_user_password(self, username: str, password: str) -> User:
        _check_password(password)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.username == username)
                .values(password_hash=hash_password(password))
            )
        if result.rowcount == 0:
            raise ConfigurationError(f"no user {username!r}")
        user = self.get_user(username)
        assert user is not None
        return user


def password_matches(user: User | None, password: str) -> bool:
    """One argon2 verification whatever happens: unknown, disabled and wrong look alike.

    No database access: the issuer runs this alone in its idle-priority password threads.
    """
    ok = verify_password(user.password_hash if user else None, password)
    return ok and user is not None and not user.disabled


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise ConfigurationError("the password must be at least 8 characters")
    if len(password) > 1024:
        raise ConfigurationError("the password must be at most 1024 characters")
