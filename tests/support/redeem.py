"""``RefreshTokenStore.redeem`` from synchronous tests: every call on one event loop, as in the
issuer (PostgreSQL's batched rotations, issuer/refresh_batch.py, keep to the loop of their first
call and answer None on any other, which would quietly test the transaction path alone)."""

from __future__ import annotations

import asyncio
from typing import Any

from issuer.refresh import Redemption, RefreshTokenStore


class Redeemer:
    """``redeem(token, **kwargs)``: ``store.redeem`` run to its end on this object's loop;
    ``close()`` (or leaving ``with``) closes the store's batch connections on that loop, then
    the loop."""

    def __init__(self, store: RefreshTokenStore) -> None:
        self.store = store
        self.runner = asyncio.Runner()

    def __call__(self, token: str, **kwargs: Any) -> Redemption:
        return self.runner.run(self.store.redeem(token, **kwargs))

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def close(self) -> None:
        try:
            self.runner.run(self.store.aclose())
        finally:
            self.runner.close()

    def __enter__(self) -> Redeemer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
