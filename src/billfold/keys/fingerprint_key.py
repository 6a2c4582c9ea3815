"""The key idempotency fingerprints are HMACs under, derived from the root key.

A request's fingerprint is stored beside its `Idempotency-Key` for a day or more, and some
requests are secrets: `POST /v1/tokens` carries a card number, `POST /v1/pii/search` the
email or phone searched for. A plain SHA-256 of such a body is found again by hashing
guesses (a card number leaves about 10^8 once its issuer prefix and check digit are known),
so whoever reads the database would read the card numbers. Fingerprints are therefore
HMAC-SHA-256 under a key no database holds (PCI DSS v4.0 requirement 3.5.1.1 asks for keyed
hashes): the keystore derives it from the root key (`Keystore.derive_key`, inside the HSM
with PKCS#11), the same in every process, once per process.

Without a configured keystore (the default embedded setup) fingerprints stay plain SHA-256:
every route that takes a secret needs the keystore too and answers 503 without it, and a
503 is not kept.
"""

from __future__ import annotations

import asyncio

from billfold.keys.keyring import Keyring

__all__ = ["FINGERPRINT_KEY_LABEL", "FingerprintKey"]

FINGERPRINT_KEY_LABEL = b"idempotency-fingerprint"


class FingerprintKey:
    """The idempotency fingerprint key of this process, derived on first use."""

    def __init__(self, keyring: Keyring, *, keystore_configured: bool) -> None:
        self._keyring = keyring
        self._enabled = keystore_configured
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
                    # Opening the keystore may derive a passphrase's key or log in to an
                    # HSM: not on the event loop.
                    self._key = await asyncio.to_thread(self._derive)
        return self._key

    def _derive(self) -> bytes:
        return self._keyring.keystore.derive_key(FINGERPRINT_KEY_LABEL)
