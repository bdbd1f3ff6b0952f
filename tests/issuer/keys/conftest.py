"""Fixtures of the key tests: a fake clock and a repository on a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.keys import KeyRepository
from shared.clock import FakeClock
from tests.issuer.keys.support import make_repo


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def repo(tmp_path: Path) -> KeyRepository:
    return make_repo(tmp_path)
