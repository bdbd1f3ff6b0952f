"""What the token endpoints remember about clients between requests, and for how long.

The client_credentials hot path meets the same few clients again and again: each client record is
read at most every :data:`CLIENT_CACHE_SECONDS`, and an ``Authorization`` header that
authenticated a client names that client again without being decoded and hashed, for no longer
than the record it came from is cached. :class:`ClientMemos` is the part of
:class:`~issuer.token_service.TokenService` that keeps these memos (the granted-scope memo is the
client_credentials grant's, in ``issuer/grants.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from issuer.accounts import AccountStore, Client
from issuer.client_auth import authenticate_client

CLIENT_CACHE_SECONDS = 2.0
# Bounds of the per-process memos on the client_credentials path (each is emptied when full).
MEMO_ENTRIES = 10_000
# The longest Authorization header whose verification is remembered (a padded one is checked
# each time, so no one fills memory with valid variants of one credential).
MAX_REMEMBERED_HEADER = 512


class ClientMemos:
    """Memoised client lookup and header verification (a mixin of ``TokenService``, which sets
    these attributes)."""

    accounts: AccountStore
    monotonic: Callable[[], float]  # the memos' clock
    # client_id -> (when it was read, the client or None).
    _client_cache: dict[str, tuple[float, Client | None]]
    # Authorization header -> (when its client was read, the client it authenticated).
    _verified: dict[str, tuple[float, Client]]

    def lookup_client_cached(self, client_id: str) -> Client | None:
        """Each client is read at most every couple of seconds (the client_credentials hot path)."""
        now = self.monotonic()
        hit = self._client_cache.get(client_id)
        if hit is not None and now - hit[0] < CLIENT_CACHE_SECONDS:
            return hit[1]
        client = self.accounts.get_client(client_id)
        if len(self._client_cache) > 10_000:
            self._client_cache.clear()
        self._client_cache[client_id] = (now, client)
        return client

    def authenticate(self, form: dict[str, str], authorization: str | None) -> Client:
        """Inline on the event loop: a cache hit costs a dict lookup and one SHA-256; a miss is
        one indexed read, at most every CLIENT_CACHE_SECONDS per client.

        A machine client sends the same ``Authorization`` header with every request: once it
        authenticated a client, the same header names that client without being decoded and
        hashed again for as long as the client's record is cached (so a changed secret or a
        disabled client takes effect within CLIENT_CACHE_SECONDS, as before). Only when the
        body carries no client credentials of its own (a ``client_id`` there must match the
        header's, a ``client_secret`` there is refused), and only successes are remembered.
        """
        if authorization is None or "client_id" in form or "client_secret" in form:
            return authenticate_client(form, authorization, self.lookup_client_cached)
        now = self.monotonic()
        hit = self._verified.get(authorization)
        if hit is not None and now - hit[0] < CLIENT_CACHE_SECONDS:
            return hit[1]
        client = authenticate_client(form, authorization, self.lookup_client_cached)
        read = self._client_cache.get(client.client_id)
        if read is not None and len(authorization) <= MAX_REMEMBERED_HEADER:
            if len(self._verified) >= MEMO_ENTRIES:
                self._verified.clear()
            self._verified[authorization] = (read[0], client)
        return client
