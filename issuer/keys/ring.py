"""The issuer process's in-memory key ring: the loaded signers, the signing plan and the JWKS.

Only :meth:`KeyRing.reload` touches the database (callers on the event loop run it in a thread);
:meth:`KeyRing.signer`, :meth:`KeyRing.jwks` and :meth:`KeyRing.verification_key` answer from
memory, so the event loop may call them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from issuer.keys.record import KeyRecord, next_change, published_records
from issuer.keys.repository import KeyRepository
from issuer.keys.schedule import SigningPlan
from shared.clock import Clock, system_clock
from shared.errors import ConfigurationError
from shared.jwks import VerificationKey, build_jwks, encode_jwks, jwks_etag, parse_jwk
from shared.tokens import TokenSigner


@dataclass(frozen=True)
class _View:
    """One reload's result, replaced as a whole so a reader never sees half of two reloads."""

    records: list[KeyRecord]  # never changed once built
    plan: SigningPlan
    signers: dict[str, TokenSigner]


class KeyRing:
    """The issuer process's in-memory view: loaded signers and the encoded JWKS.

    ``reload`` re-reads the schedule (cheap: no private key material), works out which key signs
    when from then on (:class:`SigningPlan`), and loads the private key of every key in that plan
    the first time its ``kid`` is needed, so a PEM is parsed once per key per process and a key
    that starts signing between two reloads is already loaded.
    """

    def __init__(
        self, repo: KeyRepository, *, jwks_max_age: int, clock: Clock = system_clock
    ) -> None:
        self.repo = repo
        self.jwks_max_age = jwks_max_age
        self.clock = clock
        self._view = _View([], SigningPlan.build([], 0.0), {})  # until the first reload
        self._lock = threading.Lock()  # one reload at a time
        self._jwks_cache: tuple[tuple[str, ...], bytes, str] | None = None
        self._verification_keys: dict[str, VerificationKey] = {}

    @property
    def records(self) -> list[KeyRecord]:
        return list(self._view.records)

    def reload(self) -> None:
        """Re-read the keys from the database (blocking: run it in a thread from async code)."""
        with self._lock:
            records = self.repo.records()
            plan = SigningPlan.build(records, self.clock())
            loaded = self._view.signers
            signers = {
                r.kid: loaded.get(r.kid) or TokenSigner(self.repo.load_private(r.kid))
                for r in plan.signing_keys()
            }
            self._view = _View(records, plan, signers)

    def verification_key(self, kid: str) -> VerificationKey | None:
        """A published key, for verifying this issuer's own tokens (admin API, introspection)."""
        now = self.clock()
        for record in self._view.records:
            if record.kid == kid and record.is_published(now):
                return self._verification_keys.get(kid) or self._remember_public(record)
        return None

    def _remember_public(self, record: KeyRecord) -> VerificationKey:
        key = parse_jwk(record.public_jwk)
        self._verification_keys[record.kid] = key
        return key

    def signer(self) -> TokenSigner:
        """The signer of the key that signs now, as planned at the last reload: no database
        work and no pass over the keys (the event loop asks once per batch of tokens).

        With no key to sign in that plan (every key revoked or retired since the last reload),
        this raises; the rotation scheduler makes sure a key signs, and the next reload picks
        it up.
        """
        view = self._view
        record = view.plan.at(self.clock())
        if record is None:
            raise ConfigurationError("no signing key is available")
        return view.signers[record.kid]

    def jwks(self) -> tuple[bytes, str, int]:
        """The JWKS body, its ETag and the ``max-age`` it may be cached for.

        ``max-age`` never outlives the next scheduled change of the set.
        """
        now = self.clock()
        records = self._view.records
        published = published_records(records, now)
        kids = tuple(r.kid for r in published)
        cached = self._jwks_cache
        if cached is None or cached[0] != kids:
            body = encode_jwks(build_jwks(r.public_jwk for r in published))
            cached = (kids, body, jwks_etag(body))
            self._jwks_cache = cached
        max_age = self.jwks_max_age
        change = next_change(records, now)
        if change is not None:
            max_age = max(0, min(max_age, int(change - now)))
        return cached[1], cached[2], max_age
