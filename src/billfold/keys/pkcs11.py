"""The keystore in a PKCS#11 HSM (tested against SoftHSM2), through python-pkcs11.

The root key is an AES-256 secret key object on the token, generated inside it on first
use with ``CKA_EXTRACTABLE=false`` and ``CKA_SENSITIVE=true``: its value never leaves the
HSM. Wrapping a key-encryption key is ``C_Encrypt`` with ``CKM_AES_GCM`` inside the HSM
(random 12-byte nonce, the associated data bound in); unwrapping is ``C_Decrypt``; a
derived key (``derive_key``) is ``C_Encrypt`` of a fixed input (``keystore.derivation_input``).

A PKCS#11 session is not safe to share between threads: one lock serializes the calls.
A token that is gone or a session the HSM no longer knows (it restarted, the token was
removed, the login ended) is ``KeystoreUnavailable`` (503); a ciphertext that does not
authenticate is ``DecryptionFailed``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from billfold.keys.envelope import KEY_BYTES, NONCE_BYTES
from billfold.keys.errors import DecryptionFailed, KeystoreUnavailable
from billfold.keys.keystore import derivation_input, derived_key

__all__ = ["Pkcs11Keystore"]

_TAG_BITS = 128


def _unavailable_errors() -> tuple[type[Exception], ...]:
    """The HSM is out of reach, not the data at fault (PKCS#11 v2.40 return values)."""
    from pkcs11 import exceptions

    return (
        exceptions.DeviceError,
        exceptions.DeviceMemory,
        exceptions.DeviceRemoved,
        exceptions.SessionClosed,
        exceptions.SessionHandleInvalid,
        exceptions.TokenNotPresent,
        exceptions.TokenNotRecognised,
        exceptions.UserNotLoggedIn,
    )


def _fit_for_root(key: Any) -> bool:
    """Whether a key found by its label is one the HSM generated as this module does: a
    key made by hand under that label may be extractable, or may once have been."""
    from pkcs11 import Attribute
    from pkcs11.exceptions import PKCS11Error

    try:
        return bool(
            key[Attribute.VALUE_LEN] == KEY_BYTES
            and key[Attribute.ALWAYS_SENSITIVE]
            and key[Attribute.NEVER_EXTRACTABLE]
        )
    except PKCS11Error:
        return False


class Pkcs11Keystore:
    """Root key `key_label` on the token `token_label` of the module at `module_path`."""

    def __init__(self, *, module_path: str, token_label: str, pin: str, key_label: str) -> None:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.exceptions import PKCS11Error

        self._lock = threading.Lock()
        try:
            token = pkcs11.lib(module_path).get_token(token_label=token_label)
            self._session: Any = token.open(rw=True, user_pin=pin)
        except (PKCS11Error, RuntimeError, OSError) as error:
            raise KeystoreUnavailable(
                f"Cannot open PKCS#11 token {token_label!r} with {module_path}."
            ) from error
        try:
            found = list(
                self._session.get_objects(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.LABEL: key_label,
                    }
                )
            )
            if not found:
                found = [
                    self._session.generate_key(
                        KeyType.AES,
                        256,
                        label=key_label,
                        store=True,
                        template={
                            Attribute.EXTRACTABLE: False,
                            Attribute.SENSITIVE: True,
                            Attribute.ENCRYPT: True,
                            Attribute.DECRYPT: True,
                            Attribute.WRAP: True,
                            Attribute.UNWRAP: True,
                        },
                    )
                ]
        except PKCS11Error as error:
            self.close()
            raise KeystoreUnavailable(
                f"Cannot find or generate the root key {key_label!r} on token {token_label!r}."
            ) from error
        if len(found) > 1:
            self.close()
            raise KeystoreUnavailable(
                f"PKCS#11 token {token_label!r} holds {len(found)} AES keys labelled"
                f" {key_label!r}: which one is the root key is ambiguous."
            )
        if not _fit_for_root(found[0]):
            self.close()
            raise KeystoreUnavailable(
                f"The key {key_label!r} on token {token_label!r} is not an AES-256 key that was"
                " always sensitive and never extractable: it cannot be the root key."
            )
        self._key: Any = found[0]
        self._key_id = f"pkcs11:{token_label}/{key_label}"

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def root_key(self) -> Any:
        """The HSM key object (its attributes, not its value: that never leaves)."""
        return self._key

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._seal(plaintext, nonce=nonce, aad=aad, doing="wrap")

    def _seal(self, plaintext: bytes, *, nonce: bytes, aad: bytes, doing: str) -> bytes:
        """AES-256-GCM under the root key, inside the HSM: the ciphertext, then the tag."""
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.mechanisms import GCMParams

        try:
            with self._lock:
                sealed = self._key.encrypt(
                    plaintext,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, aad, _TAG_BITS),
                )
        except PKCS11Error as error:
            raise KeystoreUnavailable(f"The HSM cannot {doing} with {self._key_id}.") from error
        return bytes(sealed)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.mechanisms import GCMParams

        if len(wrapped) <= NONCE_BYTES:
            raise DecryptionFailed("The wrapped key is too short.")
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            with self._lock:
                plain = self._key.decrypt(
                    sealed,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, aad, _TAG_BITS),
                )
        except _unavailable_errors() as error:
            raise KeystoreUnavailable(f"The HSM cannot unwrap with {self._key_id}.") from error
        except PKCS11Error as error:  # SoftHSM2 reports a failed GCM tag as CKR_GENERAL_ERROR
            raise DecryptionFailed() from error
        return bytes(plain)

    def derive_key(self, label: bytes) -> bytes:
        nonce, plaintext, aad = derivation_input(label)
        return derived_key(label, self._seal(plaintext, nonce=nonce, aad=aad, doing="derive"))

    def close(self) -> None:
        """Log out and close the session; a session the HSM already lost is closed too."""
        from pkcs11.exceptions import PKCS11Error

        with self._lock, contextlib.suppress(PKCS11Error):
            self._session.close()
