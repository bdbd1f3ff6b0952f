"""A key repository on a SQLite file with a short schedule, and questions asked of it."""

from __future__ import annotations

import json
from pathlib import Path

from issuer.db import init_schema
from issuer.engines import make_engine
from issuer.keys import (
    KeyRepository,
    KeyRing,
    KeySchedule,
    KeySealer,
    published_records,
    signing_record,
)

INTERVAL = 1000.0
AHEAD = 100.0
TTL = 50.0
MARGIN = 10.0
MAX_AGE = 30


def make_repo(tmp_path: Path, name: str = "keys.db") -> KeyRepository:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    init_schema(engine)
    schedule = KeySchedule(
        rotation_interval=INTERVAL,
        publish_ahead=AHEAD,
        access_token_ttl=TTL,
        retire_margin=MARGIN,
        create_lead=INTERVAL,  # successors are written at once; see the create_lead test
    )
    return KeyRepository(
        engine, KeySealer("a-test-secret-0123456789"), access_token_ttl=int(TTL), schedule=schedule
    )


def signing_kid(repo: KeyRepository, now: float) -> str:
    record = signing_record(repo.records(), now)
    assert record is not None
    return record.kid


def published_kids(repo: KeyRepository, now: float) -> list[str]:
    return [r.kid for r in published_records(repo.records(), now)]


def jwks_kids(ring: KeyRing) -> list[str]:
    body, _etag, _max_age = ring.jwks()
    return [k["kid"] for k in json.loads(body)["keys"]]
