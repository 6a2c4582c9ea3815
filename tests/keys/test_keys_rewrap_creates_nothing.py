"""A rewrap moves existing data keys and creates none: run on a purpose never used, it
made that purpose's key-encryption key version 1 as a side effect."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from billfold.keys import service
from billfold.keys.repository import KeyRepository
from billfold.keys.tasks import rewrap_all
from billfold.kit.db import UnitOfWork
from billfold.migrations import upgrade
from cli_support import Ran, billfold
from identity.identity_support import bootstrap_tenant
from keys.keys_support import START_NS, local_keyring, new_tenant_id


def _billfold(database_url: str, master_key: str, *arguments: str) -> Ran:
    return billfold(
        *arguments,
        environment={
            "BILLFOLD_DATABASE_URL": database_url,
            "BILLFOLD_MASTER_KEY": master_key,
            "COLUMNS": "200",
        },
    )


@pytest.mark.anyio
async def test_a_rewrap_of_a_purpose_never_used_makes_no_key(unit_of_work: UnitOfWork) -> None:
    keyring = local_keyring()
    tenant_id = new_tenant_id()
    moved = await rewrap_all(
        unit_of_work,
        keyring,
        tenant_id=tenant_id,
        purpose="webhooks",
        batch_size=10,
        actor=service.KeyActor(),
    )
    assert moved == 0
    async with unit_of_work.begin() as session:
        versions = await KeyRepository(session).key_encryption_keys(
            tenant_id=tenant_id, purpose="webhooks"
        )
        assert list(versions) == []
        progress = await service.rewrap_batch(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose="webhooks",
            batch_size=10,
            now_ns=START_NS,
        )
        assert (progress.rewrapped, progress.remaining, progress.active_version) == (0, 0, None)
        assert (
            list(
                await KeyRepository(session).key_encryption_keys(
                    tenant_id=tenant_id, purpose="webhooks"
                )
            )
            == []
        )


def test_the_rewrap_command_on_an_unused_purpose_leaves_no_version(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/keys.db"
    upgrade(database_url)
    master_key = base64.b64encode(os.urandom(32)).decode()
    tenant_id = bootstrap_tenant(database_url, name="Rewrap").tenant.id
    tenant = f"ten_{tenant_id.hex}"
    before = _billfold(database_url, master_key, "keys", "status", "--tenant", tenant)
    assert before.returncode == 0, before.stderr
    assert "webhooks" not in before.stdout
    rewrapped = _billfold(
        database_url, master_key, "keys", "rewrap", "--tenant", tenant, "--purpose", "webhooks"
    )
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "rewrapped 0 data keys" in rewrapped.stdout
    after = _billfold(database_url, master_key, "keys", "status", "--tenant", tenant)
    assert after.returncode == 0, after.stderr
    assert "webhooks" not in after.stdout
    bad = _billfold(
        database_url, master_key, "keys", "rewrap", "--tenant", tenant, "--purpose", "nonsense"
    )
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    assert "(invalid_purpose)" in bad.stderr
