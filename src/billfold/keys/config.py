"""The keyring an application uses, from its settings.

- ``keystore=pkcs11``: the HSM root key (``pkcs11_*`` settings; the PIN is required).
- ``keystore=local`` with ``master_key``: that root key, held only in memory.
- ``keystore=local`` otherwise: the keystore file (``keystore_path``, default the SQLite
  database path + ``.keystore``), created on first use; wrapped by ``keystore_passphrase``
  when one is set. Without a passphrase the file holds the root key protected only by its
  0600 mode, which is allowed for the embedded SQLite default only: with PostgreSQL one
  of the protected options is required.

The keystore opens on first use, so a misconfiguration answers 503 ``keystore_unavailable``
on the routes that need keys instead of stopping the whole application.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from billfold.keys.errors import KeystoreUnavailable
from billfold.keys.keyring import Keyring, open_keystore_guarded
from billfold.keys.keystore import (
    Keystore,
    LocalKeystore,
    decode_master_key,
    load_or_create_keystore_file,
)
from billfold.kit.db import InvalidDatabaseUrl, parse_database_url
from billfold.kit.settings import Settings

__all__ = ["keyring_from_settings", "keystore_configured", "keystore_from_settings"]

log = structlog.get_logger(__name__)


def keystore_from_settings(settings: Settings) -> Keystore:
    if settings.keystore == "pkcs11":
        from billfold.keys.pkcs11 import Pkcs11Keystore

        if settings.pkcs11_pin is None:
            raise KeystoreUnavailable("keystore=pkcs11 needs BILLFOLD_PKCS11_PIN.")
        return Pkcs11Keystore(
            module_path=settings.pkcs11_module_path,
            token_label=settings.pkcs11_token_label,
            pin=settings.pkcs11_pin.get_secret_value(),
            key_label=settings.pkcs11_key_label,
        )
    if settings.master_key is not None:
        return LocalKeystore(decode_master_key(settings.master_key.get_secret_value()))
    target = parse_database_url(settings.database_url)
    path = settings.keystore_path
    if path is None and target.sqlite_path is not None:
        path = f"{target.sqlite_path}.keystore"
    if path is None:
        raise KeystoreUnavailable(
            "With PostgreSQL, set BILLFOLD_MASTER_KEY, BILLFOLD_KEYSTORE_PATH with"
            " BILLFOLD_KEYSTORE_PASSPHRASE, or BILLFOLD_KEYSTORE=pkcs11."
        )
    passphrase = settings.keystore_passphrase
    keystore = load_or_create_keystore_file(
        Path(path),
        passphrase=None if passphrase is None else passphrase.get_secret_value(),
        allow_unprotected=settings.keystore_allow_unprotected and target.kind == "sqlite",
    )
    if passphrase is None:
        log.warning(
            "keys.keystore_unprotected",
            path=path,
            advice="set BILLFOLD_KEYSTORE_PASSPHRASE, BILLFOLD_MASTER_KEY or use PKCS#11",
        )
    return keystore


def keystore_configured(settings: Settings) -> bool:
    """Whether the settings name a keystore (whether or not it opens): PKCS#11, a master
    key, a keystore file with its passphrase, or an unprotected file allowed on SQLite.
    Otherwise `keystore_from_settings` can only refuse."""
    if settings.keystore == "pkcs11" or settings.master_key is not None:
        return True
    try:
        sqlite = parse_database_url(settings.database_url).kind == "sqlite"
    except InvalidDatabaseUrl:
        return False  # the application refuses to start with it anyway
    if settings.keystore_passphrase is not None:
        return sqlite or settings.keystore_path is not None
    return sqlite and settings.keystore_allow_unprotected


def keyring_from_settings(settings: Settings) -> Keyring:
    return Keyring(
        open_keystore_guarded(lambda: keystore_from_settings(settings)),
        cache_entries_max=settings.keys_cache_entries_max,
        cache_ttl_s=settings.keys_cache_ttl_s,
    )
