"""DPoP's errors and challenges (RFC 9449 §5, §7.1, §8): ``invalid_dpop_proof``,
``use_dpop_nonce`` with its ``DPoP-Nonce``, the ``WWW-Authenticate: DPoP`` challenge and the
one-``DPoP``-header rule. Framework-free; the checks that raise them are in :mod:`shared.dpop`
and :mod:`shared.dpop_keys`."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from shared.errors import KeyhouseError


class InvalidDPoPProof(KeyhouseError):
    """RFC 9449 §5 and §7.1 ``invalid_dpop_proof``. 401 by default (a resource server); the
    token endpoint answers 400: pass ``status_code`` (or set it on
    :class:`shared.dpop.DPoPVerifier`)."""

    error = "invalid_dpop_proof"
    status_code = 401

    def __init__(
        self,
        description: str = "",
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description, headers=headers)
        if status_code is not None:
            self.status_code = status_code


_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class UseDPoPNonce(InvalidDPoPProof):
    """RFC 9449 §8, §9 ``use_dpop_nonce``: retry with ``nonce``, sent in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"

    def __init__(
        self, nonce: str, description: str = "", *, status_code: int | None = None
    ) -> None:
        if not _NONCE.fullmatch(nonce):  # RFC 9449 §8.1: NQCHAR, and it becomes a header value
            raise ValueError("a DPoP nonce must be 1 or more characters %x21 / %x23-5B / %x5D-7E")
        super().__init__(
            description or "a DPoP nonce is required",
            status_code=status_code,
            headers={"DPoP-Nonce": nonce},
        )
        self.nonce = nonce


_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def dpop_challenge(
    algorithms: Collection[str], error: KeyhouseError | None = None, *, realm: str | None = None
) -> str:
    """The ``WWW-Authenticate`` value of RFC 9449 §7.1: ``DPoP algs="ES256 RS256"``, with
    ``error`` and ``error_description`` when ``error`` is given (a request without any token
    names none), and ``realm`` first when given."""
    params = []
    if realm is not None:
        if not _REALM.fullmatch(realm):
            raise ValueError("realm holds characters a quoted string cannot")
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error.error}"')
        if error.description:
            params.append(f'error_description="{error.description}"')  # already quote-safe
    params.append(f'algs="{" ".join(algorithms)}"')
    return "DPoP " + ", ".join(params)


def one_proof(values: Sequence[str]) -> str:
    """The one ``DPoP`` header value (§4.3 check 1: not more than one field)."""
    if len(values) != 1:
        raise InvalidDPoPProof("exactly one DPoP header is required")
    return values[0]
