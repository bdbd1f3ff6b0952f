"""Consents: what a user approved a client to have (scopes, audiences), remembered until revoked.

One row per (user, client); a later approval is merged into it (the union of scopes and of
audiences), so a client that asks for less than was approved, or for the same again, is not asked
again. ``issuer users consents USERNAME`` lists them and ``issuer users revoke-consent USERNAME
CLIENT_ID`` forgets one (the user is asked again at the next sign-in). First-party clients never
need one (signin skips the page for them).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from issuer.db import consents
from shared.scopes import format_scope, parse_scope

GRANT_ATTEMPTS = 3  # a concurrent first approval of the same pair makes the INSERT conflict


@dataclass(frozen=True)
class Consent:
    user_id: str
    client_id: str
    scopes: frozenset[str]
    audiences: frozenset[str]
    granted_at: float


class ConsentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _get(self, user_id: str, client_id: str) -> Consent | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(consents)
                    .where(consents.c.user_id == user_id)
                    .where(consents.c.client_id == client_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Consent(
            user_id=row["user_id"],
            client_id=row["client_id"],
            scopes=parse_scope(row["scopes"]),
            audiences=frozenset(row["audiences"].split()),
            granted_at=row["granted_at"],
        )

    def covers(self, user_id: str, client_id: str, scopes: Iterable[str], audience: str) -> bool:
        """Has the user approved at least ``scopes`` and ``audience`` for this client?"""
        consent = self._get(user_id, client_id)
        return (
            consent is not None
            and frozenset(scopes) <= consent.scopes
            and audience in consent.audiences
        )

    def grant(
        self, user_id: str, client_id: str, scopes: Iterable[str], audience: str, now: float
    ) -> None:
        """Remember the approval, merged with the earlier ones for this client."""
        asked = frozenset(scopes)
        for attempt in range(GRANT_ATTEMPTS):
            earlier = self._get(user_id, client_id)
            try:
                with self.engine.begin() as conn:
                    if earlier is None:
                        conn.execute(
                            consents.insert().values(
                                user_id=user_id,
                                client_id=client_id,
                                scopes=format_scope(asked),
                                audiences=audience,
                                granted_at=now,
                            )
                        )
                        return
                    merged_audiences = sorted(earlier.audiences | {audience})
                    changed = conn.execute(
                        update(consents)
                        .where(consents.c.user_id == user_id)
                        .where(consents.c.client_id == client_id)
                        .values(
                            scopes=format_scope(earlier.scopes | asked),
                            audiences=" ".join(merged_audiences),
                            granted_at=now,
                        )
                    ).rowcount
                if changed == 1:
                    return
            except IntegrityError:  # another approval inserted the row first: merge into it
                if attempt == GRANT_ATTEMPTS - 1:
                    raise

    def revoke(self, user_id: str, client_id: str) -> bool:
        """Forget the user's approval of the client. True if there was one."""
        with self.engine.begin() as conn:
            deleted = conn.execute(
                delete(consents)
                .where(consents.c.user_id == user_id)
                .where(consents.c.client_id == client_id)
            ).rowcount
        return bool(deleted)

    def list(self, user_id: str) -> builtins.list[Consent]:
        """The user's consents, by client_id."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(consents)
                    .where(consents.c.user_id == user_id)
                    .order_by(consents.c.client_id)
                )
                .mappings()
                .all()
            )
        return [
            Consent(
                user_id=row["user_id"],
                client_id=row["client_id"],
                scopes=parse_scope(row["scopes"]),
                audiences=frozenset(row["audiences"].split()),
                granted_at=row["granted_at"],
            )
            for row in rows
        ]
