"""The key idempotency fingerprints are HMACs under, kept out of the database.

A request's fingerprint is stored beside its `Idempotency-Key` for a day or more, and some
requests are secrets: `POST /v1/tokens` carries a card number, `POST /v1/pii/search` the
email or phone searched for. A plain SHA-256 of such a body is found again by hashing
guesses (a card number leaves about 10^8 once its issuer prefix and check digit are known),
so whoever reads the database would read the card numbers. Fingerprints are therefore
HMAC-SHA-256 under a key the database holds only wrapped by the keystore (PCI DSS v4.0
requirement 3.5.1.1 asks for keyed hashes): the platform's stable data key of purpose
``blind_index``, owner ``idempotency``. It is made on first use, never changes (a rotation
rewraps it), and is read once per process.

Without a configured keystore (the default embedded setup) fingerprints stay plain SHA-256:
every route that takes a secret needs the keystore too and answers 503 without it, and a
503 is not kept.
"""

from __future__ import annotations

import asyncio

from billfold.keys.keyring import PLATFORM_TENANT_ID, Keyring
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork

__all__ = ["FINGERPRINT_KEY_OWNER", "FINGERPRINT_KEY_PURPOSE", "FingerprintKey"]

FINGERPRINT_KEY_PURPOSE = "blind_index"
FINGERPRINT_KEY_OWNER = "idempotency"


class FingerprintKey:
    """The idempotency fingerprint key of this process, unwrapped on first use."""

    def __init__(
        self,
        keyring: Keyring,
        unit_of_work: UnitOfWork,
        *,
        keystore_configured: bool,
        clock: Clock | None = None,
    ) -> None:
        self._keyring = keyring
        self._unit_of_work = unit_of_work
        self._enabled = keystore_configured
        self._clock = clock or SystemClock()
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> bytes | None:
        """The key; None when no keystore is configured. KeystoreUnavailable (503) when
        one is configured but cannot be opened: a fingerprint made without the key would
        not match the requests stored with it."""
        if not self._enabled:
            return None
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = await self._load()
        return self._key

    async def _load(self) -> bytes:
        async with self._unit_of_work.begin() as session:
            return await self._keyring.stable_key(
                session,
                tenant_id=PLATFORM_TENANT_ID,
                purpose=FINGERPRINT_KEY_PURPOSE,
                owner=FINGERPRINT_KEY_OWNER,
                now_ns=self._clock.now_ns(),
            )
