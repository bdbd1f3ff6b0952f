"""Schema changes go through Alembic migrations (issuer/migrations), on SQLite and PostgreSQL.

- The migrations produce exactly ``issuer.db.metadata``: a table or column added to the code
  without a migration fails here.
- Upgrading keeps keys, clients, users and refresh tokens, both from a database at revision 0001
  and from one created by the pre-migration ``create_all`` path (adopted: stamped, upgraded).
- 0004 adds ``refresh_tokens.parent_hash`` (indexed) to a 0003 database, its rows keep working.
- 0005 adds the sign-in columns (clients, refresh_tokens.sid) and tables to a 0004 database.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Engine

from issuer import db, engines
from issuer.accounts import AccountStore, password_matches
from issuer.refresh import RefreshTokenStore, token_hash
from shared.errors import ConfigurationError
from shared.scopes import parse_scope


@pytest.fixture
def engine(issuer_database_url: str) -> Iterator[Engine]:
    eng = engines.make_engine(issuer_database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _head() -> str:
    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    assert head is not None
    return head


def _seed(engine: Engine) -> str:
    """Rows in the 0001 tables, written the way the issuer wrote them. Returns the password."""
    accounts = AccountStore(engine)
    with engine.begin() as conn:  # the 0001 columns only (today's create_client writes more)
        conn.execute(
            text(
                "INSERT INTO clients (client_id, name, secret_hash, scopes, audiences,"
                " grant_types, created_at, disabled) VALUES ('old-client', 'old', :s,"
                " 'photos:read', 'photos', 'client_credentials password refresh_token', 1.0, :f)"
            ),
            {"s": token_hash("old-secret"), "f": False},
        )
    accounts.create_user(
        username="alice", password="alice-password", scopes=parse_scope("photos:read"), now=1.0
    )
    with engine.begin() as conn:
        conn.execute(
            insert(db.signing_keys).values(
                kid="k1",
                private_key=b"\x00sealed\xff",
                public_jwk='{"kty":"RSA"}',
                created_at=1.5,
                publish_at=1.5,
                activate_at=1.5,
            )
        )
        conn.execute(
            insert(db.refresh_tokens).values(
                token_hash="h" * 64,
                family_id="f1",
                client_id="old-client",
                user_id="u1",
                scopes="photos:read",
                audience="photos",
                created_at=2.0,
                expires_at=9e9,
                family_expires_at=9e9,
            )
        )
    return "alice-password"


def _assert_seeded_data_kept(engine: Engine, password: str) -> None:
    accounts = AccountStore(engine)
    client = accounts.get_client("old-client")
    assert client is not None
    assert password_matches(accounts.find_login("alice"), password)
    with engine.connect() as conn:
        key = conn.execute(select(db.signing_keys)).mappings().one()
        assert (key["kid"], key["private_key"]) == ("k1", b"\x00sealed\xff")
        assert key["activate_at"] == 1.5
        token = conn.execute(select(db.refresh_tokens)).mappings().one()
        assert (token["family_id"], token["used_at"], token["expires_at"]) == ("f1", None, 9e9)
        assert conn.execute(select(func.count()).select_from(db.auth_failures)).scalar() == 0


def test_fresh_database_is_at_head_and_matches_metadata(engine: Engine) -> None:
    db.init_schema(engine)
    db.init_schema(engine)  # idempotent
    assert db.schema_revision(engine) == _head()
    with engine.connect() as conn:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata
        )
    assert diffs == [], (
        "issuer.db.metadata and issuer/migrations disagree: add a migration "
        f"(see docs/containers.md, 'Schema migrations'): {diffs}"
    )


def test_a_database_at_head_is_not_migrated_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every start after the first: one query, no Alembic command (which reads and compiles
    every migration script); the head is read once per process."""
    db.init_schema(engine)
    calls: list[str] = []
    monkeypatch.setattr(command, "upgrade", lambda *a, **k: calls.append("upgrade"))
    monkeypatch.setattr(command, "stamp", lambda *a, **k: calls.append("stamp"))
    db.init_schema(engine)
    assert calls == []
    with engine.begin() as conn:  # one revision behind: migrated as before
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": "0001"})
    db.init_schema(engine)
    assert calls == ["upgrade"]


def test_the_head_and_the_revisions_read_from_the_scripts_are_alembics() -> None:
    """init_schema and open_store read the scripts' own revision lines instead of loading them
    through Alembic: they must agree with Alembic, script by script."""
    scripts = ScriptDirectory.from_config(db.alembic_config())
    assert db.head_revision() == scripts.get_current_head()
    assert db._revision_graph() == {
        s.revision: s.down_revision
        for s in scripts.walk_revisions()  # type: ignore[misc]
    }


def test_revision_lines_in_either_quote_one_head_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_a.py").write_text(
        'revision: str = "0001"\ndown_revision: str | None = None\n'
    )
    # as script.py.mako writes them (repr: single quotes)
    (versions / "0002_b.py").write_text("revision: str = '0002'\ndown_revision = '0001'\n")
    monkeypatch.setattr(db, "MIGRATIONS", tmp_path)
    db.head_revision.cache_clear()
    try:
        assert db._revision_graph() == {"0001": None, "0002": "0001"}
        assert db.head_revision() == "0002"
        (versions / "0003_c.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
        db.head_revision.cache_clear()
        with pytest.raises(ConfigurationError, match="one head, found \\['0002', '0003'\\]"):
            db.head_revision()
        (versions / "0004_d.py").write_text("x = 1\n")
        with pytest.raises(ConfigurationError, match=r"0004_d\.py"):
            db._revision_graph()
    finally:
        db.head_revision.cache_clear()  # the real head again for the tests after


def test_a_process_that_opens_the_store_at_head_never_imports_alembic(tmp_path: Path) -> None:
    """Alembic (with Mako and Pygments) is ~0.2 s of a cold start: only a migration needs it."""
    url = f"sqlite:///{tmp_path}/issuer.db"
    engine = engines.make_engine(url)
    db.init_schema(engine)
    engine.dispose()
    probe = (
        "import sys; from issuer import db, app; from issuer.engines import make_engine;"
        f" e = make_engine({url!r}); db.init_schema(e); db.open_store({url!r}).dispose();"
        " e.dispose(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_upgrade_from_0001_keeps_data(engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), db.INITIAL_REVISION)
    assert db.schema_revision(engine) == db.INITIAL_REVISION
    password = _seed(engine)
    db.init_schema(engine)
    assert db.schema_revision(engine) == _head()
    _assert_seeded_data_kept(engine, password)


@pytest.mark.parametrize("era", ["before-issue-4", "with-auth-failures"])
def test_create_all_database_is_adopted(engine: Engine, era: str) -> None:
    """Databases made by the old ``metadata.create_all`` (no alembic_version table)."""
    tables = [db.signing_keys, db.clients, db.users, db.refresh_tokens, db.audit_events]
    if era == "with-auth-failures":
        tables.append(db.auth_failures)
    db.metadata.create_all(engine, tables=tables)
    password = _seed(engine)
    assert db.schema_revision(engine) is None
    db.init_schema(engine)
    assert db.schema_revision(engine) == _head()
    assert set(inspect(engine).get_table_names()) >= {t.name for t in db.metadata.sorted_tables}
    _assert_seeded_data_kept(engine, password)


def test_upgrade_from_0003_adds_parent_hash_and_keeps_refresh_tokens(engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0003")
    columns = {c["name"] for c in inspect(engine).get_columns("refresh_tokens")}
    assert "parent_hash" not in columns
    with engine.begin() as conn:  # a 0003 row, written without the column
        conn.execute(
            text(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes,"
                " audience, created_at, expires_at, family_expires_at) VALUES"
                " (:h, 'f1', 'c1', 'u1', 'photos:read', 'photos', 2.0, 9e9, 9e9)"
            ),
            {"h": token_hash("old-token")},
        )
    db.init_schema(engine)
    db.init_schema(engine)  # idempotent
    assert db.schema_revision(engine) == _head()
    inspector = inspect(engine)
    assert "parent_hash" in {c["name"] for c in inspector.get_columns("refresh_tokens")}
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("refresh_tokens")}
    assert indexes["ix_refresh_tokens_parent"] == ["parent_hash"]
    # The old row is intact (no parent) and still rotates; its successor records it.
    store = RefreshTokenStore(engine, ttl=1000)
    redemption = store.rotate(
        "old-token",
        client_id="c1",
        now=3.0,
        narrow=lambda grant, _conn: (grant.scopes, grant.audience),
        replay_grace=10,
    )
    assert redemption.status == "ok"
    assert redemption.token is not None
    with engine.connect() as conn:
        parents = dict(
            conn.execute(
                select(db.refresh_tokens.c.token_hash, db.refresh_tokens.c.parent_hash)
            ).all()
        )
    assert parents == {
        token_hash("old-token"): None,
        token_hash(redemption.token): token_hash("old-token"),
    }
    # And back: 0004's downgrade drops the column and its index, keeping the rows.
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0003")
    inspector = inspect(engine)
    assert "parent_hash" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}
    assert "ix_refresh_tokens_parent" not in {
        i["name"] for i in inspector.get_indexes("refresh_tokens")
    }
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(db.refresh_tokens))
        assert count.scalar() == 2


def test_upgrade_from_0004_adds_sign_in_columns_and_tables(engine: Engine) -> None:
    """0005: old clients read as confidential, not first-party, without redirect URIs; old refresh
    tokens have no session and still rotate; the new tables exist; downgrade keeps the rows."""
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0004")
        conn.execute(  # a 0004 client and refresh token, written without the new columns
            text(
                "INSERT INTO clients (client_id, name, secret_hash, scopes, audiences,"
                " grant_types, created_at, disabled) VALUES ('c1', 'old', :s, 'photos:read',"
                " 'photos', 'password refresh_token', 1.0, :f)"
            ),
            {"s": token_hash("old-secret"), "f": False},
        )
        conn.execute(
            text(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes,"
                " audience, created_at, expires_at, family_expires_at) VALUES"
                " (:h, 'f1', 'c1', 'u1', 'photos:read', 'photos', 2.0, 9e9, 9e9)"
            ),
            {"h": token_hash("old-token")},
        )
    db.init_schema(engine)
    db.init_schema(engine)  # idempotent
    assert db.schema_revision(engine) == _head()
    inspector = inspect(engine)
    assert {"login_sessions", "consents", "authorization_codes", "revoked_access_tokens"} <= set(
        inspector.get_table_names()
    )
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("refresh_tokens")}
    assert indexes["ix_refresh_tokens_sid"] == ["sid"]
    client = AccountStore(engine).get_client("c1")
    assert client is not None
    assert (client.redirect_uris, client.post_logout_redirect_uris) == ((), ())
    assert (client.public, client.first_party) == (False, False)
    assert client.token_endpoint_auth_method == "client_secret_basic"
    redemption = RefreshTokenStore(engine, ttl=1000).rotate(
        "old-token",
        client_id="c1",
        now=3.0,
        narrow=lambda grant, _conn: (grant.scopes, grant.audience),
    )
    assert redemption.status == "ok"
    assert redemption.token is not None
    with engine.connect() as conn:
        sids = set(conn.execute(select(db.refresh_tokens.c.sid)).scalars())
    assert sids == {None}
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0004")
    inspector = inspect(engine)
    assert "public" not in {c["name"] for c in inspector.get_columns("clients")}
    assert "sid" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}
    assert not inspector.has_table("login_sessions")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.refresh_tokens)).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM clients")).scalar() == 1
