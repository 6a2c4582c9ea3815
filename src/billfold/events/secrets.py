"""Webhook endpoint secrets at rest: sealed with the keyring when a keystore is configured.

A sealed secret is stored as `enc1:` and the base64 of a field ciphertext
(`billfold.keys.envelope`: AES-256-GCM under the tenant's `webhooks` data key), whose
associated data binds it to the tenant, the table, the column (`secret` or
`previous_secret`) and the endpoint's row id: copied to another row or column it does not
open. Without a configured keystore the secret is stored as it is (`whsec_…`), as before;
both forms are read, so endpoints made before a keystore was configured keep working (their
secret is sealed at the next rotation).
"""

from __future__ import annotations

import base64
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.keys.envelope import FieldContext
from billfold.keys.errors import KeystoreUnavailable
from billfold.keys.keyring import TENANT_OWNER, Keyring
from billfold.kit.db import parse_database_url
from billfold.kit.settings import Settings

__all__ = [
    "PURPOSE",
    "SEALED_PREFIX",
    "is_sealed",
    "keystore_configured",
    "open_secret",
    "seal_secret",
]

SEALED_PREFIX = "enc1:"
PURPOSE = "webhooks"
TABLE = "events_webhook_endpoints"


def keystore_configured(settings: Settings) -> bool:
    """Whether the settings name a keystore that can open: an HSM, a master key, a keystore
    file under a passphrase, or (SQLite, development) an unprotected keystore file."""
    return (
        settings.keystore == "pkcs11"
        or settings.master_key is not None
        or settings.keystore_passphrase is not None
        or (
            settings.keystore_allow_unprotected
            and parse_database_url(settings.database_url).kind == "sqlite"
        )
    )


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def _context(*, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, column: str) -> FieldContext:
    return FieldContext(
        tenant_id=tenant_id, purpose=PURPOSE, table=TABLE, column=column, row_id=endpoint_id.hex
    )


async def seal_secret(
    session: AsyncSession,
    keyring: Keyring | None,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    column: str,
    secret: str,
    now_ns: int,
) -> str:
    """What to store for `secret` in `column`: sealed with `keyring`, or as it is without."""
    if keyring is None:
        return secret
    ciphertext = await keyring.encrypt(
        session,
        secret.encode(),
        context=_context(tenant_id=tenant_id, endpoint_id=endpoint_id, column=column),
        owner=TENANT_OWNER,
        now_ns=now_ns,
    )
    return SEALED_PREFIX + base64.b64encode(ciphertext).decode("ascii")


async def open_secret(
    session: AsyncSession,
    keyring: Keyring | None,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    column: str,
    stored: str,
) -> str:
    """The secret `stored` in `column` holds (DecryptionFailed if it was moved)."""
    if not is_sealed(stored):
        return stored
    if keyring is None:
        raise KeystoreUnavailable("A sealed webhook secret needs the keystore.")
    plaintext = await keyring.decrypt(
        session,
        base64.b64decode(stored[len(SEALED_PREFIX) :]),
        context=_context(tenant_id=tenant_id, endpoint_id=endpoint_id, column=column),
    )
    return plaintext.decode()
