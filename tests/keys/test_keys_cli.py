"""`billfold keys status|rotate|rewrap|retire|rotate-signing` end to end on a SQLite file
with a master key: data written under three versions stays readable after the cycle."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from pathlib import Path

from billfold.keys.envelope import FieldContext
from billfold.keys.keyring import Keyring
from billfold.keys.keystore import LocalKeystore
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.migrations import upgrade
from cli_support import Ran, billfold
from identity.identity_support import bootstrap_tenant
from keys.keys_support import START_NS


def _billfold(database_url: str, master_key: str, *arguments: str) -> Ran:
    return billfold(
        *arguments,
        environment={
            "BILLFOLD_DATABASE_URL": database_url,
            "BILLFOLD_MASTER_KEY": master_key,
            "COLUMNS": "200",
        },
    )


async def _write(database_url: str, keyring: Keyring, tenant_id: uuid.UUID, row: str) -> bytes:
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            context = FieldContext(tenant_id, "pii", "t", "c", row)
            return await keyring.encrypt(
                session, row.encode(), context=context, owner=f"usr_{row}", now_ns=START_NS
            )
    finally:
        await engine.dispose()


async def _read(
    database_url: str, keyring: Keyring, tenant_id: uuid.UUID, row: str, data: bytes
) -> bytes:
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            context = FieldContext(tenant_id, "pii", "t", "c", row)
            return await keyring.decrypt(session, data, context=context)
    finally:
        await engine.dispose()


def test_the_rotation_cycle_from_the_command_line(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/keys.db"
    upgrade(database_url)
    root = os.urandom(32)
    master_key = base64.b64encode(root).decode()
    tenant_id = bootstrap_tenant(database_url, name="Keys").tenant.id
    tenant = f"ten_{tenant_id.hex}"
    written = {}
    for version in (1, 2, 3):
        if version > 1:
            rotated = _billfold(
                database_url, master_key, "keys", "rotate", "--tenant", tenant, "--purpose", "pii"
            )
            assert rotated.returncode == 0, rotated.stderr
            assert f"pii v{version} active" in rotated.stdout
        keyring = Keyring(lambda: LocalKeystore(root))  # a fresh process's view each time
        written[f"r{version}"] = asyncio.run(
            _write(database_url, keyring, tenant_id, f"r{version}")
        )
    status = _billfold(database_url, master_key, "keys", "status", "--tenant", tenant)
    assert status.returncode == 0, status.stderr
    assert "decrypt_only" in status.stdout and "active" in status.stdout
    refused = _billfold(
        database_url,
        master_key,
        "keys",
        "retire",
        "--tenant",
        tenant,
        "--purpose",
        "pii",
        "--version",
        "1",
    )
    assert refused.returncode == 1 and "rewrap" in refused.stderr
    rewrapped = _billfold(
        database_url, master_key, "keys", "rewrap", "--tenant", tenant, "--purpose", "pii"
    )
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "rewrapped 2 data keys" in rewrapped.stdout
    for version in ("1", "2"):
        retired = _billfold(
            database_url,
            master_key,
            "keys",
            "retire",
            "--tenant",
            tenant,
            "--purpose",
            "pii",
            "--version",
            version,
        )
        assert retired.returncode == 0, retired.stderr
    keyring = Keyring(lambda: LocalKeystore(root))
    for row, data in written.items():
        assert asyncio.run(_read(database_url, keyring, tenant_id, row, data)) == row.encode()
    signing = _billfold(database_url, master_key, "keys", "rotate-signing")
    assert signing.returncode == 0 and "v1 active" in signing.stdout, signing.stderr
    wrong_key = _billfold(
        database_url,
        base64.b64encode(os.urandom(32)).decode(),
        "keys",
        "rotate",
        "--tenant",
        tenant,
        "--purpose",
        "pii",
    )
    assert wrong_key.returncode == 1
    bad_purpose = _billfold(
        database_url, master_key, "keys", "rotate", "--tenant", tenant, "--purpose", "nope"
    )
    assert bad_purpose.returncode == 1 and "purpose" in bad_purpose.stderr.lower()


def test_a_malformed_id_is_refused_cleanly_and_a_refusal_names_its_code(tmp_path: Path) -> None:
    """No traceback for a mistyped id (exit 1 with the problem, as for any refusal); a
    refusal prints the problem's stable code beside its title, as the README quotes them."""
    database_url = f"sqlite:///{tmp_path}/keys.db"
    master_key = base64.b64encode(os.urandom(32)).decode()
    for arguments in (
        ("keys", "rotate", "--tenant", "garbage", "--purpose", "pii"),
        ("keys", "status", "--tenant", "ten_xyz"),
        ("audit", "verify", "--tenant", "garbage"),
        ("audit", "prove", "aud_nothex"),
    ):
        ran = _billfold(database_url, master_key, *arguments)
        assert ran.returncode == 1, (arguments, ran.stderr)
        assert "Traceback" not in ran.stderr and "(invalid_id)" in ran.stderr, ran.stderr
    upgrade(database_url)
    tenant = f"ten_{bootstrap_tenant(database_url, name='Keys').tenant.id.hex}"
    assert _billfold(database_url, master_key, "keys", "status", "--tenant", tenant).returncode == 0
    bad_purpose = _billfold(
        database_url, master_key, "keys", "rotate", "--tenant", tenant, "--purpose", "nope"
    )
    assert bad_purpose.returncode == 1
    assert "Unknown key purpose (invalid_purpose):" in bad_purpose.stderr, bad_purpose.stderr


def test_keys_are_made_only_for_a_tenant_that_exists(tmp_path: Path) -> None:
    """The keyring makes a first version for any id on demand: a mistyped tenant got key
    versions of its own from `rotate`, `rewrap` and `rotate-signing`."""
    database_url = f"sqlite:///{tmp_path}/keys.db"
    master_key = base64.b64encode(os.urandom(32)).decode()
    nobody = f"ten_{uuid.uuid4().hex}"
    for arguments in (
        ("keys", "rotate", "--tenant", nobody, "--purpose", "pii"),
        ("keys", "rewrap", "--tenant", nobody, "--purpose", "pii"),
        ("keys", "rotate-signing", "--tenant", nobody),
    ):
        ran = _billfold(database_url, master_key, *arguments)
        assert ran.returncode == 1, (arguments, ran.stdout, ran.stderr)
        assert "(tenant_not_found)" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    status = _billfold(database_url, master_key, "keys", "status", "--tenant", nobody)
    assert status.returncode == 0, status.stderr
    assert uuid.UUID(nobody[4:]).hex not in status.stdout
    signing = _billfold(database_url, master_key, "keys", "rotate-signing")
    assert signing.returncode == 0, signing.stderr
