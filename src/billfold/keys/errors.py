"""The key hierarchy's typed errors, rendered as problem+json by the kit's handlers.

The hierarchy::

    BillfoldError
    ├── NotFound
    │   └── KeyVersionNotFound       404 key_version_not_found
    ├── Conflict
    │   ├── KeyVersionInUse          409 key_version_in_use
    │   ├── KeyVersionActive         409 key_version_active
    │   └── ConcurrentRotation       409 concurrent_rotation
    ├── ValidationFailed
    │   ├── KeyDestroyed             422 key_destroyed   (crypto-shredded data)
    │   ├── DecryptionFailed         422 decryption_failed
    │   └── InvalidPurpose           422 invalid_purpose
    │       └── UnknownKey           422 unknown_key     (a rotation request names none)
    └── ServiceUnavailable
        └── KeystoreUnavailable      503 keystore_unavailable
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed

__all__ = [
    "ConcurrentRotation",
    "DecryptionFailed",
    "InvalidPurpose",
    "KeyDestroyed",
    "KeyVersionActive",
    "KeyVersionInUse",
    "KeyVersionNotFound",
    "KeystoreUnavailable",
    "UnknownKey",
]


class KeyVersionNotFound(NotFound):
    code = "key_version_not_found"
    title = "No such key version"


class KeyVersionInUse(Conflict):
    code = "key_version_in_use"
    title = "Data keys are still wrapped by this key version; rewrap them first"


class KeyVersionActive(Conflict):
    code = "key_version_active"
    title = "The active key version cannot be retired; rotate first"


class KeyDestroyed(ValidationFailed):
    code = "key_destroyed"
    title = "The data key was destroyed; the data is unreadable"


class DecryptionFailed(ValidationFailed):
    code = "decryption_failed"
    title = "The ciphertext does not decrypt in this context"


class InvalidPurpose(ValidationFailed):
    code = "invalid_purpose"
    title = "Unknown key purpose"


class UnknownKey(InvalidPurpose):
    """A four-eyes key rotation request names no key of the hierarchy: refused when it is
    made, with the code its execution would fail with (``failure: unknown_key``)."""

    code = "unknown_key"
    title = "No such key to rotate"


class KeystoreUnavailable(ServiceUnavailable):
    code = "keystore_unavailable"
    title = "The keystore is not configured or cannot be opened"


class ConcurrentRotation(Conflict):
    code = "concurrent_rotation"
    title = "Another rotation created this key version first; try again"
