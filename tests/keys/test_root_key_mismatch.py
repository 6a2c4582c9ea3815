"""README: "A rotation under a different root key than the previous version's is refused
(`keystore_unavailable`)", and nothing is changed by the refusal (on both backends)."""

from __future__ import annotations

import os

import pytest

from billfold.keys import service
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import KeystoreUnavailable
from billfold.kit.db import UnitOfWork
from keys.keys_support import START_NS, local_keyring, new_tenant_id

pytestmark = pytest.mark.anyio


async def test_a_rotation_under_another_root_key_is_refused(unit_of_work: UnitOfWork) -> None:
    tenant_id = new_tenant_id()
    right, wrong = local_keyring(os.urandom(32)), local_keyring(os.urandom(32))
    context = FieldContext(tenant_id=tenant_id, purpose="pii", table="t", column="c", row_id="1")
    async with unit_of_work.begin() as session:
        ciphertext = await right.encrypt(
            session, b"secret", context=context, owner="usr_a", now_ns=START_NS
        )
    with pytest.raises(KeystoreUnavailable):
        async with unit_of_work.begin() as session:
            await service.rotate(
                session,
                keyring=wrong,
                tenant_id=tenant_id,
                purpose="pii",
                actor=service.KeyActor(),
                now_ns=START_NS,
            )
    async with unit_of_work.begin() as session:
        status = await service.key_status(session, tenant_id=tenant_id, purpose="pii")
        assert [(v.version, v.status) for v in status.versions] == [(1, "active")]
        assert await right.decrypt(session, ciphertext, context=context) == b"secret"
        with pytest.raises(KeystoreUnavailable):
            await wrong.decrypt(session, ciphertext, context=context)
