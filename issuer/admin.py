"""Key administration shared by the admin HTTP API and the CLI: one code path for both."""

from __future__ import annotations

from typing import Any

from issuer import audit
from issuer.keystore import KeyRepository, signing_record
from shared.clock import Clock, system_clock


class KeyAdmin:
    def __init__(self, repo: KeyRepository, *, clock: Clock = system_clock) -> None:
        self.repo = repo
        self.clock = clock

    def list(self) -> list[dict[str, Any]]:
        now = self.clock()
        records = self.repo.records()
        signing = signing_record(records, now)
        return [
            {**r.to_dict(now), "signing": signing is not None and r.kid == signing.kid}
            for r in sorted(records, key=lambda r: (r.created_at, r.kid))
        ]

    def rotate(self) -> dict[str, Any]:
        now = self.clock()
        record = self.repo.rotate(now)
        return record.to_dict(now)

    def revoke(self, kid: str) -> dict[str, Any]:
        now = self.clock()
        record = self.repo.revoke(kid, now)
        audit.key_revoked(self.repo.engine, kid, now=now)
        return record.to_dict(now)
