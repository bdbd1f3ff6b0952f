"""A failed authentication, of a client or of a user: counted, audited, and refused while blocked.

The throttle (``issuer/throttle.py``) counts failures per client_id, username and address in
the database; :class:`FailedAttempts` is the part of :class:`~issuer.token_service.TokenService`
that asks it before a check and tells it after a failure, and writes both to the audit log.
Blocking work: call these from a worker thread.
"""

from __future__ import annotations

from issuer import audit
from issuer.audit import AuditLog
from issuer.throttle import Block, Throttle, ThrottleKey
from shared.errors import SlowDown


class FailedAttempts:
    """A mixin of ``TokenService``, which sets ``throttle`` and ``audit``."""

    throttle: Throttle
    audit: AuditLog

    def _check_blocked(self, keys: list[ThrottleKey], now: float) -> None:
        block = self.throttle.blocked(keys, now)
        if block is not None:
            raise _slow_down(block)

    def _failed(
        self,
        keys: list[ThrottleKey],
        now: float,
        event: str,
        *,
        address: str,
        client_id: str | None,
        subject: str | None,
        detail: str,
    ) -> None:
        """Count one failure against ``keys`` and audit it (and any block it starts)."""
        self.audit.record(
            event, client_id=client_id, subject=subject, address=address, detail=detail
        )
        for key in self.throttle.record_failure(keys, now):
            self.audit.record(
                audit.THROTTLED,
                client_id=client_id,
                subject=subject,
                address=address,
                detail=(
                    f"{key.kind} reached {key.limit} failures in {self.throttle.window}s; blocked"
                ),
            )


def _slow_down(block: Block) -> SlowDown:
    return SlowDown(
        "too many failed attempts; try again later",
        headers={"Retry-After": str(block.retry_after)},
    )
