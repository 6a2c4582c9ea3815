"""Envelope encryption through the key hierarchy, on both database backends: contexts bind
ciphertexts to their row, rotation and rewrap keep old data readable, retirement and
destruction make keys unusable."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from billfold.identity.security_events import SecurityEvent
from billfold.keys import service
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import (
    DecryptionFailed,
    InvalidPurpose,
    KeyDestroyed,
    KeyVersionActive,
    KeyVersionInUse,
    KeyVersionNotFound,
)
from billfold.keys.keyring import DEFAULT_CACHE_TTL_S, Keyring
from billfold.keys.models import DataKey, KeyEncryptionKey
from billfold.kit.db import UnitOfWork
from keys.keys_support import START_NS, local_keyring, new_tenant_id

pytestmark = pytest.mark.anyio
ACTOR = service.KeyActor()


def _context(tenant_id: uuid.UUID, row_id: str, *, column: str = "email") -> FieldContext:
    return FieldContext(
        tenant_id=tenant_id, purpose="pii", table="people", column=column, row_id=row_id
    )


async def _encrypt(
    unit_of_work: UnitOfWork, keyring: Keyring, context: FieldContext, value: bytes, owner: str
) -> bytes:
    async with unit_of_work.begin() as session:
        return await keyring.encrypt(session, value, context=context, owner=owner, now_ns=START_NS)


async def _decrypt(
    unit_of_work: UnitOfWork, keyring: Keyring, context: FieldContext, ciphertext: bytes
) -> bytes:
    async with unit_of_work.begin() as session:
        return await keyring.decrypt(session, ciphertext, context=context)


async def test_a_field_decrypts_in_its_own_context(unit_of_work: UnitOfWork) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    context = _context(tenant_id, "row-1")
    ciphertext = await _encrypt(unit_of_work, keyring, context, b"ann@example.com", "usr_a")
    assert b"ann@example.com" not in ciphertext
    assert await _decrypt(unit_of_work, keyring, context, ciphertext) == b"ann@example.com"
    # A fresh keyring (another process) reads it through the database, not its cache.
    fresh = Keyring(keyring._open_keystore)
    assert await _decrypt(unit_of_work, fresh, context, ciphertext) == b"ann@example.com"


async def test_a_ciphertext_moved_to_another_row_column_or_tenant_fails(
    unit_of_work: UnitOfWork,
) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    ciphertext = await _encrypt(
        unit_of_work, keyring, _context(tenant_id, "row-1"), b"secret", "usr_a"
    )
    for elsewhere in (
        _context(tenant_id, "row-2"),
        _context(tenant_id, "row-1", column="phone"),
        _context(new_tenant_id(), "row-1"),
    ):
        with pytest.raises(DecryptionFailed):
            await _decrypt(unit_of_work, keyring, elsewhere, ciphertext)
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        await _decrypt(unit_of_work, keyring, _context(tenant_id, "row-1"), bytes(tampered))
    for garbage in (b"", b"\x01" * 10, b"\x02" + ciphertext[1:]):
        with pytest.raises(DecryptionFailed):
            await _decrypt(unit_of_work, keyring, _context(tenant_id, "row-1"), garbage)


async def test_data_under_three_versions_survives_rotation_rewrap_and_retirement(
    unit_of_work: UnitOfWork,
) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    written: list[tuple[FieldContext, bytes, bytes]] = []
    for version in (1, 2, 3):
        if version > 1:
            async with unit_of_work.begin() as session:
                row = await service.rotate(
                    session,
                    keyring=keyring,
                    tenant_id=tenant_id,
                    purpose="pii",
                    actor=ACTOR,
                    now_ns=START_NS,
                )
                assert row.version == version
        for index in range(3):
            context = _context(tenant_id, f"v{version}-{index}")
            value = f"value {version}/{index}".encode()
            ciphertext = await _encrypt(unit_of_work, keyring, context, value, f"usr_{index}")
            written.append((context, ciphertext, value))
    async with unit_of_work.begin() as session:
        status = await service.key_status(session, tenant_id=tenant_id, purpose="pii")
    assert [(v.version, v.status, v.data_keys) for v in status.versions] == [
        (3, "active", 3),
        (2, "decrypt_only", 3),
        (1, "decrypt_only", 3),
    ]
    assert status.pending_rewrap == 6
    async with unit_of_work.begin() as session:
        with pytest.raises(KeyVersionInUse):
            await service.retire_version(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                version=1,
                actor=ACTOR,
                now_ns=START_NS,
            )
    progress: list[int] = []
    while True:
        async with unit_of_work.begin() as session:
            step = await service.rewrap_batch(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                batch_size=4,
                now_ns=START_NS,
            )
        progress.append(step.remaining)
        if step.remaining == 0:
            break
    assert progress == [2, 0]
    for version in (1, 2):
        async with unit_of_work.begin() as session:
            retired = await service.retire_version(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                version=version,
                actor=ACTOR,
                now_ns=START_NS,
            )
            assert retired.status == "retired" and retired.wrapped_key is None
    fresh = Keyring(keyring._open_keystore)
    for context, ciphertext, value in written:
        assert await _decrypt(unit_of_work, fresh, context, ciphertext) == value
    async with unit_of_work.begin() as session:
        events = (
            await session.scalars(
                select(SecurityEvent.event_type).where(SecurityEvent.tenant_id == tenant_id)
            )
        ).all()
    assert sorted(events) == ["key.retired", "key.retired", "key.rotated", "key.rotated"]


async def test_the_active_version_cannot_be_retired_and_unknown_ones_are_404(
    unit_of_work: UnitOfWork,
) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    await _encrypt(unit_of_work, keyring, _context(tenant_id, "r"), b"x", "usr_a")
    async with unit_of_work.begin() as session:
        with pytest.raises(KeyVersionActive):
            await service.retire_version(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                version=1,
                actor=ACTOR,
                now_ns=START_NS,
            )
        with pytest.raises(KeyVersionNotFound):
            await service.retire_version(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                version=9,
                actor=ACTOR,
                now_ns=START_NS,
            )
        with pytest.raises(InvalidPurpose):
            await service.key_status(session, tenant_id=tenant_id, purpose="nonsense")


async def test_destroying_an_owners_keys_makes_only_their_data_unreadable(
    unit_of_work: UnitOfWork,
) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    ann = await _encrypt(unit_of_work, keyring, _context(tenant_id, "ann"), b"ann", "usr_ann")
    bob = await _encrypt(unit_of_work, keyring, _context(tenant_id, "bob"), b"bob", "usr_bob")
    async with unit_of_work.begin() as session:
        destroyed = await keyring.destroy_owner(
            session, tenant_id=tenant_id, owner="usr_ann", now_ns=START_NS
        )
    assert destroyed == 1
    with pytest.raises(KeyDestroyed):
        await _decrypt(unit_of_work, keyring, _context(tenant_id, "ann"), ann)
    with pytest.raises(KeyDestroyed):
        await _decrypt(
            unit_of_work, Keyring(keyring._open_keystore), _context(tenant_id, "ann"), ann
        )
    assert await _decrypt(unit_of_work, keyring, _context(tenant_id, "bob"), bob) == b"bob"


async def test_a_destroyed_owner_gets_no_new_key_after_a_rotation(
    unit_of_work: UnitOfWork,
) -> None:
    """The rotation's new version has no slot for the destroyed owner: encrypting for them
    must not make one, or an erased user's data could be stored, readable, again."""
    tenant_id, keyring = new_tenant_id(), local_keyring()
    context = _context(tenant_id, "ann")
    await _encrypt(unit_of_work, keyring, context, b"ann", "usr_ann")
    async with unit_of_work.begin() as session:
        await keyring.destroy_owner(session, tenant_id=tenant_id, owner="usr_ann", now_ns=START_NS)
        await service.rotate(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose="pii",
            actor=ACTOR,
            now_ns=START_NS,
        )
    with pytest.raises(KeyDestroyed):
        await _encrypt(unit_of_work, keyring, context, b"ann again", "usr_ann")
    bob = await _encrypt(unit_of_work, keyring, _context(tenant_id, "bob"), b"bob", "usr_bob")
    assert await _decrypt(unit_of_work, keyring, _context(tenant_id, "bob"), bob) == b"bob"


async def test_no_key_is_stored_in_the_clear(unit_of_work: UnitOfWork) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    await _encrypt(unit_of_work, keyring, _context(tenant_id, "r"), b"x", "usr_a")
    async with unit_of_work.begin() as session:
        data_key = (
            await session.scalars(select(DataKey).where(DataKey.tenant_id == tenant_id))
        ).one()
        kek = (
            await session.scalars(
                select(KeyEncryptionKey).where(KeyEncryptionKey.tenant_id == tenant_id)
            )
        ).one()
        raw = await keyring.unwrap_data_key(session, data_key)
    assert data_key.wrapped_key is not None and raw not in data_key.wrapped_key
    assert kek.wrapped_key is not None and len(kek.wrapped_key) == 12 + 32 + 16
    assert kek.keystore_key_id.startswith("local:")


async def test_a_data_key_made_in_a_rolled_back_transaction_is_not_reused(
    unit_of_work: UnitOfWork,
) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()

    # A transaction that makes the owner's first data key, then rolls back.
    async with unit_of_work.begin() as session:
        await keyring.encrypt(
            session, b"lost", context=_context(tenant_id, "r"), owner="usr_a", now_ns=START_NS
        )
        await session.rollback()
    ciphertext = await _encrypt(unit_of_work, keyring, _context(tenant_id, "r"), b"kept", "usr_a")
    fresh = Keyring(keyring._open_keystore)
    assert await _decrypt(unit_of_work, fresh, _context(tenant_id, "r"), ciphertext) == b"kept"


class _Clock:
    """The cache's clock, moved by hand (no test waits on wall-clock time)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_another_process_sees_a_rotation_and_a_shredding_within_the_cache_ttl(
    unit_of_work: UnitOfWork,
) -> None:
    """Two keyrings stand for two processes: what one changes, the other sees once its
    cached keys are older than `cache_ttl_s`; the one that changed it, at once."""
    assert DEFAULT_CACHE_TTL_S == 30.0
    tenant_id = new_tenant_id()
    here = local_keyring()
    clock = _Clock()
    there = Keyring(here._open_keystore, cache_ttl_s=DEFAULT_CACHE_TTL_S, cache_clock=clock)
    context = _context(tenant_id, "ann")
    first = await _encrypt(unit_of_work, there, context, b"v1", "usr_ann")
    again = await _encrypt(unit_of_work, there, context, b"v1", "usr_ann")  # cached _current
    async with unit_of_work.begin() as session:
        await service.rotate(
            session, keyring=here, tenant_id=tenant_id, purpose="pii", actor=ACTOR, now_ns=START_NS
        )
    # Within the TTL the other process still encrypts under version 1's data key...
    stale = await _encrypt(unit_of_work, there, context, b"v1", "usr_ann")
    assert stale[1:17] == first[1:17] == again[1:17]
    # ...and once its cache is older than the TTL, under version 2's.
    clock.now += DEFAULT_CACHE_TTL_S
    fresh = await _encrypt(unit_of_work, there, context, b"v2", "usr_ann")
    assert fresh[1:17] != first[1:17]
    # This process encrypts under version 2 at once.
    mine = await _encrypt(unit_of_work, here, context, b"v2", "usr_ann")
    assert mine[1:17] == fresh[1:17]

    assert await _decrypt(unit_of_work, there, context, first) == b"v1"
    async with unit_of_work.begin() as session:
        await here.destroy_owner(session, tenant_id=tenant_id, owner="usr_ann", now_ns=START_NS)
    with pytest.raises(KeyDestroyed):
        await _decrypt(unit_of_work, here, context, first)
    assert await _decrypt(unit_of_work, there, context, first) == b"v1"  # still cached there
    clock.now += DEFAULT_CACHE_TTL_S
    with pytest.raises(KeyDestroyed):
        await _decrypt(unit_of_work, there, context, first)


async def test_using_a_cached_key_again_does_not_extend_its_ttl(
    unit_of_work: UnitOfWork,
) -> None:
    """The TTL counts from the unwrapping: a key unwrapped for a read and reused for a write
    just before it expires is not kept longer, so a shredding elsewhere is seen in time."""
    tenant_id = new_tenant_id()
    here = local_keyring()
    clock = _Clock()
    there = Keyring(here._open_keystore, cache_ttl_s=DEFAULT_CACHE_TTL_S, cache_clock=clock)
    context = _context(tenant_id, "ann")
    ciphertext = await _encrypt(unit_of_work, here, context, b"ann", "usr_ann")
    assert await _decrypt(unit_of_work, there, context, ciphertext) == b"ann"  # unwrapped
    clock.now += DEFAULT_CACHE_TTL_S - 1
    await _encrypt(unit_of_work, there, context, b"ann", "usr_ann")  # the same key, cached
    async with unit_of_work.begin() as session:
        await here.destroy_owner(session, tenant_id=tenant_id, owner="usr_ann", now_ns=START_NS)
    clock.now += 2  # the unwrapping is now older than the TTL
    with pytest.raises(KeyDestroyed):
        await _decrypt(unit_of_work, there, context, ciphertext)
    with pytest.raises(KeyDestroyed):
        await _encrypt(unit_of_work, there, context, b"lost", "usr_ann")


async def test_a_read_racing_a_shredding_in_this_process_does_not_keep_the_key(
    unit_of_work: UnitOfWork, database_url: str
) -> None:
    """A request that decrypts while another request's erasure is not yet committed reads
    the still-live data key and caches it; the erasure's commit evicts it again."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite transactions do not overlap: BEGIN IMMEDIATE serializes them")
    tenant_id, keyring = new_tenant_id(), local_keyring()
    context = _context(tenant_id, "ann")
    ciphertext = await _encrypt(unit_of_work, keyring, context, b"ann", "usr_ann")
    async with unit_of_work.begin() as session:
        await keyring.destroy_owner(session, tenant_id=tenant_id, owner="usr_ann", now_ns=START_NS)
        # Meanwhile, another request of this process (its own transaction) still reads it.
        assert await _decrypt(unit_of_work, keyring, context, ciphertext) == b"ann"
    with pytest.raises(KeyDestroyed):
        await _decrypt(unit_of_work, keyring, context, ciphertext)
