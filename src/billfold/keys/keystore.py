"""The root of the key hierarchy: a keystore that wraps and unwraps key-encryption keys.

Two backends satisfy :class:`Keystore`:

- :class:`LocalKeystore` (the embedded default): the 32-byte root key held in memory, from
  ``BILLFOLD_MASTER_KEY`` or from a keystore file (:func:`load_or_create_keystore_file`);
- ``billfold.keys.pkcs11.Pkcs11Keystore``: the root key generated inside a PKCS#11 HSM,
  non-extractable; wrapping happens inside the HSM.

The keystore file (JSON, mode 0600) is one of::

    {"format": "billfold-keystore-v1", "protection": "argon2id", "key_id": "...",
     "argon2id": {"time_cost": 3, "memory_cost_kib": 65536, "parallelism": 1, "salt": B64},
     "wrapped_root_key": B64}            # nonce | AES-256-GCM(root key), key from Argon2id
    {"format": "billfold-keystore-v1", "protection": "none", "key_id": "...",
     "root_key": B64}                    # zero-configuration SQLite only; see the README
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billfold.keys.envelope import KEY_BYTES, NONCE_BYTES, canonical_aad, seal, unseal
from billfold.keys.errors import DecryptionFailed, KeystoreUnavailable

__all__ = [
    "KEYSTORE_FILE_FORMAT",
    "Argon2idCost",
    "Keystore",
    "LocalKeystore",
    "decode_master_key",
    "derivation_input",
    "derived_key",
    "load_or_create_keystore_file",
]

KEYSTORE_FILE_FORMAT = "billfold-keystore-v1"
_KEYSTORE_FILE_BYTES_MAX = 16_384
_SALT_BYTES = 16


class Keystore(Protocol):
    """Wraps and unwraps key-encryption keys with a root key the caller never sees."""

    @property
    def key_id(self) -> str:
        """Names the root key, stored beside every key it wraps."""
        ...

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """AES-256-GCM under the root key, bound to `aad`."""
        ...

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        """The inverse of `wrap`; DecryptionFailed when the bytes or `aad` differ."""
        ...

    def derive_key(self, label: bytes) -> bytes:
        """32 bytes that only this root key gives for `label`, the same at every call and in
        every process (`derived_key`): a key that needs no row, so no database holds it."""
        ...

    def close(self) -> None: ...


class LocalKeystore:
    """The root key in this process's memory."""

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) != KEY_BYTES:
            raise ValueError("the root key is 32 bytes")
        self._cipher = AESGCM(root_key)
        digest = hashlib.sha256(b"billfold.root-key-id\x00" + root_key).hexdigest()
        self._key_id = f"local:{digest[:16]}"

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        return seal(self._cipher, plaintext, aad=aad)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        return unseal(self._cipher, wrapped, aad=aad)

    def derive_key(self, label: bytes) -> bytes:
        nonce, plaintext, aad = derivation_input(label)
        return derived_key(label, self._cipher.encrypt(nonce, plaintext, aad))

    def close(self) -> None:
        """Nothing to release."""


_DERIVATION_DOMAIN = b"billfold.derived-key.v1\x00"


def derivation_input(label: bytes) -> tuple[bytes, bytes, bytes]:
    """The nonce, plaintext and associated data a keystore seals with AES-256-GCM under its
    root key to derive the key of `label` (`derived_key` finishes it).

    The nonce is fixed per label, so the output is the same every time: that is the point,
    and it is safe because a (nonce, plaintext) pair is only ever sealed again as itself.
    Every other use of the root key draws a random 96-bit nonce, which meets one of these
    with a chance of 2^-96 per use. An HSM computes it with `C_Encrypt`, the root key never
    leaving it, exactly as a local root key does in memory."""
    digest = hashlib.sha256(_DERIVATION_DOMAIN + label).digest()
    return digest[:NONCE_BYTES], bytes(KEY_BYTES), _DERIVATION_DOMAIN + label


def derived_key(label: bytes, sealed: bytes) -> bytes:
    """The key of `label` from the root key's seal of `derivation_input(label)` (the
    ciphertext, then the tag): both hashed, bound to the label."""
    return hashlib.sha256(_DERIVATION_DOMAIN + label + sealed).digest()


def decode_master_key(text: str) -> bytes:
    """`BILLFOLD_MASTER_KEY`: standard or URL-safe base64 of exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except ValueError as error:
        raise ValueError("the master key is base64 of 32 random bytes") from error
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the master key is 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class Argon2idCost:
    """RFC 9106's second recommended option (64 MiB, 3 passes)."""

    time_cost: int = 3
    memory_cost_kib: int = 65_536
    parallelism: int = 1

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        return hash_secret_raw(
            passphrase.encode(),
            salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
            hash_len=KEY_BYTES,
            type=Type.ID,
        )


_FILE_AAD = canonical_aad("billfold.keystore.v1")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _write_new(path: Path, document: dict[str, Any]) -> None:
    """Created exclusively with mode 0600: never overwrites a root key, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(document, file, indent=2)
        file.flush()
        os.fsync(file.fileno())


def _new_document(root_key: bytes, passphrase: str | None, cost: Argon2idCost) -> dict[str, Any]:
    key_id = LocalKeystore(root_key).key_id
    if passphrase is None:
        return {
            "format": KEYSTORE_FILE_FORMAT,
            "protection": "none",
            "key_id": key_id,
            "root_key": _b64(root_key),
        }
    salt = os.urandom(_SALT_BYTES)
    wrapping = AESGCM(cost.derive(passphrase, salt))
    return {
        "format": KEYSTORE_FILE_FORMAT,
        "protection": "argon2id",
        "key_id": key_id,
        "argon2id": {
            "time_cost": cost.time_cost,
            "memory_cost_kib": cost.memory_cost_kib,
            "parallelism": cost.parallelism,
            "salt": _b64(salt),
        },
        "wrapped_root_key": _b64(seal(wrapping, root_key, aad=_FILE_AAD)),
    }


def _read_document(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _KEYSTORE_FILE_BYTES_MAX:
        raise KeystoreUnavailable(f"{path} is too large to be a keystore file.")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise KeystoreUnavailable(f"{path} is not a readable keystore file.") from error
    if not isinstance(document, dict) or document.get("format") != KEYSTORE_FILE_FORMAT:
        raise KeystoreUnavailable(f"{path} is not a {KEYSTORE_FILE_FORMAT} file.")
    return document


def _root_key_of(document: dict[str, Any], passphrase: str | None) -> bytes:
    try:
        if document["protection"] == "none":
            return base64.b64decode(document["root_key"])
        if document["protection"] != "argon2id":
            raise KeystoreUnavailable("Unknown keystore protection.")
        if passphrase is None:
            raise KeystoreUnavailable(
                "The keystore is passphrase-protected: set BILLFOLD_KEYSTORE_PASSPHRASE."
            )
        parameters = document["argon2id"]
        cost = Argon2idCost(
            time_cost=int(parameters["time_cost"]),
            memory_cost_kib=int(parameters["memory_cost_kib"]),
            parallelism=int(parameters["parallelism"]),
        )
        wrapping = AESGCM(cost.derive(passphrase, base64.b64decode(parameters["salt"])))
        return unseal(wrapping, base64.b64decode(document["wrapped_root_key"]), aad=_FILE_AAD)
    except DecryptionFailed as error:
        raise KeystoreUnavailable("Wrong keystore passphrase.") from error
    except (KeyError, TypeError, ValueError) as error:
        raise KeystoreUnavailable("The keystore file is malformed.") from error


def load_or_create_keystore_file(
    path: Path,
    *,
    passphrase: str | None,
    allow_unprotected: bool,
    cost: Argon2idCost | None = None,
) -> LocalKeystore:
    """Open the keystore file at `path`, creating it with a fresh random root key when it
    does not exist. Without a passphrase the file holds the root key unwrapped, protected
    only by its 0600 mode: allowed only when `allow_unprotected` (embedded SQLite)."""
    cost = cost or Argon2idCost()
    if passphrase is None and not allow_unprotected:
        raise KeystoreUnavailable(
            "Configure BILLFOLD_MASTER_KEY, BILLFOLD_KEYSTORE_PASSPHRASE or a PKCS#11 keystore."
        )
    if not path.exists():
        # Another process may create it first: then its key is the one to use.
        with contextlib.suppress(FileExistsError):
            _write_new(path, _new_document(os.urandom(KEY_BYTES), passphrase, cost))
    document = _read_document(path)
    if document.get("protection") == "none" and not allow_unprotected:
        raise KeystoreUnavailable(f"{path} holds an unprotected root key: protect it first.")
    keystore = LocalKeystore(_root_key_of(document, passphrase))
    if document.get("key_id") != keystore.key_id:
        raise KeystoreUnavailable(f"{path}: the root key does not match its key id.")
    return keystore
