"""The order in which the test files run: the longest first, so the workers finish together.

pytest-xdist (``--dist loadfile``) keeps each file on one worker and hands the next file to
whichever worker runs out of work first, in collection order (once its default reorder, by the
number of tests in a file, is switched off: see tests/conftest.py). With the longest files first
(longest-processing-time-first scheduling) the short ones fill in at the end and the workers
finish within seconds of each other; in alphabetical order the compose tier, the longest file,
started after most of the suite and ran alone at the end.

``WEIGHTS`` are rough seconds of one worker per file, measured with ``--durations=0`` (summed per
file) on the two-core machine with three workers; only their order matters. A file not listed
weighs 10 s per default when it starts processes (marker ``e2e``) and a few milliseconds per
test otherwise, so a new end-to-end file still starts before the unit files. Refresh the table
when a file's time changes much: ``./scripts/test --durations=0`` and sum the lines of each
file.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

WEIGHTS: dict[str, float] = {
    "tests/e2e/test_compose.py": 104,  # image builds (cached), the stack, failover, down/up
    "tests/e2e/test_drill.py": 76,  # rotation and revocation timetables: mostly waiting
    "tests/bench/test_bench_database_smoke.py": 58,
    "tests/e2e/test_replicas_postgres.py": 39,
    "tests/e2e/test_pushed_revocation.py": 36,
    "tests/issuer/test_cli.py": 32,
    "tests/bench/test_bench_dpop_smoke.py": 28,
    "tests/e2e/test_replicas_sqlite.py": 24,
    "tests/issuer/test_token_endpoint_strict.py": 22,
    "tests/e2e/test_browser.py": 21,
    "tests/e2e/test_scripts_up.py": 20,
    "tests/issuer/test_password_concurrency.py": 18,
    "tests/e2e/test_refresh_concurrency.py": 15,
    "tests/e2e/test_signin.py": 14,
    "tests/issuer/test_passwords.py": 13,
    "tests/e2e/test_events_stream.py": 13,
    "tests/e2e/test_slow_clients.py": 13,
    "tests/webapp/test_dpop.py": 10,
    "tests/e2e/test_stack.py": 10,
    "tests/e2e/test_hostile_jwks.py": 10,
    "tests/e2e/test_db_outage.py": 8,
    "tests/issuer/test_client_registration.py": 8,
    "tests/bench/test_bench_smoke.py": 7,
    "tests/e2e/test_dpop_token.py": 7,
    "tests/webapp/test_flow.py": 7,
    "tests/support/test_postgres_support.py": 7,
    "tests/support/test_forkserver.py": 6,
    "tests/issuer/test_refresh_batch.py": 6,
    "tests/issuer/test_endpoints.py": 6,
    "tests/webapp/test_issuer_down.py": 6,
    "tests/bench/test_balancer_cfg.py": 6,
    "tests/issuer/test_refresh.py": 5,
    "tests/e2e/test_dpop_resource.py": 5,
    "tests/issuer/test_migrations.py": 5,
    "tests/shared/test_deny_list_properties.py": 5,
    "tests/e2e/test_issuer_restart.py": 4,
    "tests/issuer/test_client_auth.py": 4,
    "tests/issuer/test_throttle.py": 4,
    "tests/issuer/test_revocation.py": 4,
}
UNLISTED_E2E_WEIGHT = 10.0
UNLISTED_WEIGHT_PER_TEST = 0.005


def file_weights(items: Sequence[pytest.Item]) -> dict[str, float]:
    """Each collected file's weight (see the module doc)."""
    weights: dict[str, float] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in WEIGHTS:
            weights[path] = WEIGHTS[path]
        elif item.get_closest_marker("e2e") is not None:
            weights[path] = max(weights.get(path, 0.0), UNLISTED_E2E_WEIGHT)
        else:
            weights[path] = weights.get(path, 0.0) + UNLISTED_WEIGHT_PER_TEST
    return weights


def longest_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: files by weight, heaviest first; ties and the tests within a
    file keep their collection order (the sort is stable), so every worker collects the same
    order, as pytest-xdist requires."""
    weights = file_weights(items)
    items.sort(key=lambda item: -weights[item.nodeid.split("::", 1)[0]])
