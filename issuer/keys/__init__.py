"""Signing keys: each key's schedule and state, the database repository that changes them, the
process's in-memory key ring, sealing at rest, and the key administration the admin API and the
CLI share.

* :mod:`issuer.keys.record`: one key's stored times and its state at an instant.
* :mod:`issuer.keys.schedule`: the rotation policy and the signing plan (pure).
* :mod:`issuer.keys.repository`: creating, rotating and revoking keys in the database.
* :mod:`issuer.keys.opening`: opening a process's repository (the secret, the first key).
* :mod:`issuer.keys.ring`: the loaded signers and the JWKS, served from memory.
* :mod:`issuer.keys.sealing`: private keys encrypted at rest.
* :mod:`issuer.keys.admin`: list, rotate, revoke and the scheduler's tick.
"""

from issuer.keys.admin import KeyAdmin
from issuer.keys.opening import OpenedKeys, open_key_repository, prepare_keys
from issuer.keys.record import (
    KeyRecord,
    next_change,
    pending_records,
    published_records,
    signing_record,
)
from issuer.keys.repository import KeyRepository, RevocationResult, RotationResult
from issuer.keys.ring import KeyRing
from issuer.keys.schedule import VERIFIER_LEEWAY_MARGIN, KeySchedule, SigningPlan, rotation_due
from issuer.keys.sealing import KeySealer, find_secret, generate_secret_file

__all__ = [
    "VERIFIER_LEEWAY_MARGIN",
    "KeyAdmin",
    "KeyRecord",
    "KeyRepository",
    "KeyRing",
    "KeySchedule",
    "KeySealer",
    "OpenedKeys",
    "RevocationResult",
    "RotationResult",
    "SigningPlan",
    "find_secret",
    "generate_secret_file",
    "next_change",
    "open_key_repository",
    "pending_records",
    "prepare_keys",
    "published_records",
    "rotation_due",
    "signing_record",
]
