"""Appending, checkpointing and verifying, and an attacker with raw database access who
edits, deletes, inserts or swaps rows: verify fails at that position, on both backends."""

from __future__ import annotations

import hashlib
import itertools
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from audit.audit_support import (
    append_entries,
    as_attacker,
    audit_service,
    checkpoint_chain,
    execute,
    insert_entry_row,
    opened,
    raw_uuid,
    sequences,
    shift_sequences,
    signer,
)
from billfold.audit import merkle, service
from billfold.audit.encoding import (
    PLATFORM_CHAIN_ID,
    ZERO_HASH,
    EntryFields,
    entry_hash,
)
from billfold.audit.errors import AuditChainBroken, EntryNotCheckpointed
from billfold.audit.repository import fields_of
from billfold.audit.signing import LocalEd25519Signer, verify_signature
from billfold.audit.verify import ChainReport
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio
ENTRIES = 8


async def _verify(database_url: str, chain_id: uuid.UUID) -> ChainReport:
    async with opened(database_url) as unit_of_work:
        [report] = await audit_service(unit_of_work).verify(chain_ids=[chain_id])
        return report


async def test_entries_form_a_chain_that_verifies(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        entries = await append_entries(unit_of_work, tenant_id=tenant_id, count=ENTRIES)
    assert sequences(entries) == list(range(1, ENTRIES + 1))
    assert entries[0].previous_hash == ZERO_HASH
    for before, after in itertools.pairwise(entries):
        assert after.previous_hash == before.entry_hash
    for entry in entries:
        assert entry_hash(fields_of(entry)) == entry.entry_hash
    assert entries[1].before == '{"limit":1}'
    assert entries[1].after == '{"limit":2,"note":"naïve ✓"}'
    report = await _verify(database_url, tenant_id)
    assert report.ok, report.problem
    assert report.entries_checked == ENTRIES


async def test_tenants_and_the_platform_have_separate_chains(database_url: str) -> None:
    first, second = new_id(), new_id()
    async with opened(database_url) as unit_of_work:
        await append_entries(unit_of_work, tenant_id=first, count=2)
        [other] = await append_entries(unit_of_work, tenant_id=second, count=1)
        [platform] = await append_entries(unit_of_work, tenant_id=None, count=1)
    assert other.sequence == 1 and other.chain_id == second
    assert platform.chain_id == PLATFORM_CHAIN_ID and platform.tenant_id is None


async def test_an_entry_rolls_back_with_the_act(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        with pytest.raises(RuntimeError):
            await _append_then_fail(unit_of_work, tenant_id)
        [entry] = await append_entries(unit_of_work, tenant_id=tenant_id, count=1)
    assert entry.sequence == 1
    assert (await _verify(database_url, tenant_id)).ok


async def _append_then_fail(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> None:
    async with unit_of_work.begin() as session:
        await service.append(
            session,
            tenant_id=tenant_id,
            action="config.changed",
            occurred_at=1,
            actor_type="system",
            actor_id=None,
        )
        raise RuntimeError("the act failed")


async def test_the_database_refuses_to_change_entries_and_checkpoints(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        await append_entries(unit_of_work, tenant_id=tenant_id, count=2)
        await checkpoint_chain(unit_of_work, tenant_id)
        for statement in (
            "UPDATE audit_entries SET action = 'x' WHERE chain_id = :c",
            "DELETE FROM audit_entries WHERE chain_id = :c",
            "UPDATE audit_checkpoints SET number = 9 WHERE chain_id = :c",
            "DELETE FROM audit_checkpoints WHERE chain_id = :c",
        ):
            with pytest.raises(Exception, match="immutable"):  # the driver decides the class
                async with unit_of_work.begin() as session:
                    await execute(session, statement, c=raw_uuid(session, tenant_id))


async def test_a_checkpoint_signs_the_merkle_root_of_new_entries(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        audit = audit_service(unit_of_work, entries_max=5)
        entries = await append_entries(unit_of_work, tenant_id=tenant_id, count=ENTRIES)
        assert await audit.checkpoint_due() >= 1
        async with unit_of_work.begin() as session:
            first = await service.latest_checkpoint(session, tenant_id=tenant_id)
        assert (first.number, first.first_sequence, first.last_sequence) == (1, 1, 5)
        while await audit.checkpoint_due():  # catches up over several runs
            pass
        async with unit_of_work.begin() as session:
            second = await service.latest_checkpoint(session, tenant_id=tenant_id)
    assert (second.number, second.first_sequence, second.last_sequence) == (2, 6, ENTRIES)
    assert second.previous_hash == first.checkpoint_hash
    leaves = [merkle.leaf_hash(entry.entry_hash) for entry in entries[5:]]
    assert second.root_hash == merkle.tree_root(leaves)
    assert second.head_hash == entries[-1].entry_hash
    message = service.checkpoint_message(service.fields_of_checkpoint(second))
    assert hashlib.sha256(message).digest() == second.checkpoint_hash
    assert verify_signature(
        public_key=signer().public_key_raw(), signature=second.signature, message=message
    )
    report = await _verify(database_url, tenant_id)
    assert report.ok and report.checkpoints_checked == 2


async def test_an_inclusion_proof_verifies_against_the_signed_root(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        entries = await append_entries(unit_of_work, tenant_id=tenant_id, count=ENTRIES)
        async with unit_of_work.begin() as session:
            with pytest.raises(EntryNotCheckpointed):
                await service.prove_inclusion(session, tenant_id=tenant_id, entry_id=entries[2].id)
        await checkpoint_chain(unit_of_work, tenant_id)
        for entry in entries:
            async with unit_of_work.begin() as session:
                proof = await service.prove_inclusion(
                    session, tenant_id=tenant_id, entry_id=entry.id
                )
            assert hashlib.sha256(proof.encoding).digest() == entry.entry_hash
            assert merkle.verify_inclusion(
                leaf=merkle.leaf_hash(entry.entry_hash),
                index=proof.leaf_index,
                tree_size=proof.tree_size,
                proof=proof.path,
                root=proof.checkpoint.root_hash,
            )
        async with unit_of_work.begin() as session:
            with pytest.raises(service.AuditEntryNotFound):  # another tenant's view
                await service.prove_inclusion(session, tenant_id=new_id(), entry_id=entries[0].id)


# ---------------------------------------------------------------- the attacker's edits


async def _chain(database_url: str, *, checkpoint: bool = False) -> tuple[uuid.UUID, list]:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        entries = await append_entries(unit_of_work, tenant_id=tenant_id, count=ENTRIES)
        if checkpoint:
            await checkpoint_chain(unit_of_work, tenant_id)
    assert (await _verify(database_url, tenant_id)).ok
    return tenant_id, entries


async def test_an_edited_entry_fails_at_its_position(database_url: str) -> None:
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await execute(
            session,
            "UPDATE audit_entries SET after = :after WHERE id = :id",
            after='{"limit":1000000}',
            id=raw_uuid(session, entries[3].id),
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (4, "entry_modified")
    assert report.problem.entry_id == entries[3].id


async def test_a_deleted_entry_fails_at_its_position(database_url: str) -> None:
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await execute(
            session, "DELETE FROM audit_entries WHERE id = :id", id=raw_uuid(session, entries[2].id)
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (3, "entry_missing")


async def test_an_entry_inserted_with_a_made_up_hash_fails_at_its_position(
    database_url: str,
) -> None:
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await shift_sequences(session, chain_id=tenant_id, from_sequence=5, by=1)
        await insert_entry_row(session, _forged_row(tenant_id, 5, entries[3].entry_hash, b"?" * 32))
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (5, "entry_modified")


async def test_an_entry_inserted_with_a_correct_hash_fails_where_the_chain_breaks(
    database_url: str,
) -> None:
    """An attacker who hashes the forged entry properly makes it consistent with the one
    before it; the chain then breaks at the next entry, which still names its true
    predecessor and its old position."""
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await shift_sequences(session, chain_id=tenant_id, from_sequence=5, by=1)
        await insert_entry_row(session, _forged_row(tenant_id, 5, entries[3].entry_hash, None))
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (6, "entry_modified")


async def test_swapped_entries_fail_at_the_first_of_them(database_url: str) -> None:
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        chain = raw_uuid(session, tenant_id)
        for old, new in ((6, -1), (7, 6), (-1, 7)):
            await execute(
                session,
                "UPDATE audit_entries SET sequence = :new WHERE chain_id = :c AND sequence = :old",
                c=chain,
                old=old,
                new=new,
            )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (6, "entry_modified")
    assert report.problem.entry_id == entries[6].id


async def test_a_rewritten_checkpointed_range_fails_at_the_checkpoint(database_url: str) -> None:
    """The strongest attacker without the signing key: edits entry 3 and recomputes every
    later hash and the head row, so the chain itself is consistent again. The signed root
    no longer matches, and checkpointing or proving refuses to go on."""
    tenant_id, entries = await _chain(database_url, checkpoint=True)
    async with as_attacker(database_url) as session:
        await _rewrite_from(session, tenant_id, entries, position=3)
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (1, "checkpoint_mismatch")
    async with opened(database_url) as unit_of_work, unit_of_work.begin() as session:
        with pytest.raises(AuditChainBroken):
            await service.prove_inclusion(session, tenant_id=tenant_id, entry_id=entries[0].id)


async def test_a_rewritten_tail_cannot_be_checkpointed(database_url: str) -> None:
    tenant_id, entries = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await execute(
            session,
            "UPDATE audit_entries SET action = 'nothing.happened' WHERE id = :id",
            id=raw_uuid(session, entries[1].id),
        )
    async with opened(database_url) as unit_of_work, unit_of_work.begin() as session:
        with pytest.raises(AuditChainBroken) as broken:
            await service.create_checkpoint(
                session, chain_id=tenant_id, signer=signer(), now_ns=1, entries_max=100
            )
    assert broken.value.extensions["position"] == 2


@pytest.mark.parametrize(
    ("statement", "position"),
    [
        ("UPDATE audit_entries SET action = 'x' WHERE chain_id = :c AND sequence = 5", 5),
        ("UPDATE audit_entries SET occurred_at = -1 WHERE chain_id = :c AND sequence = 5", 5),
        (
            "UPDATE audit_chain_heads SET checkpoint_number = 0, checkpoint_sequence = 0"
            " WHERE chain_id = :c",
            None,
        ),
    ],
    ids=["edited", "out-of-range", "head-rewound"],
)
async def test_a_broken_chain_is_skipped_and_the_others_are_still_checkpointed(
    isolated_database_url: str, statement: str, position: int | None
) -> None:
    """The README: a chain whose new entries do not verify, or whose last checkpoint does
    not match its head, is logged as ``audit.chain_broken`` and skipped. A time no entry
    can have, or a head naming an older checkpoint than the newest, raised instead and
    ended the run before the chains after it (in chain id order) were signed."""
    url = isolated_database_url
    broken, healthy = uuid.UUID(int=1), uuid.UUID(int=2)
    async with opened(url) as unit_of_work:
        await append_entries(unit_of_work, tenant_id=broken, count=3)
        await checkpoint_chain(unit_of_work, broken)
        await append_entries(unit_of_work, tenant_id=broken, count=2, start_ns=100)
        await append_entries(unit_of_work, tenant_id=healthy, count=3)
    async with as_attacker(url) as session:
        await execute(session, statement, c=raw_uuid(session, broken))
    async with opened(url) as unit_of_work:
        with capture_logs() as logs:
            assert await audit_service(unit_of_work).checkpoint_due() == 1
        async with unit_of_work.begin() as session:
            signed = await service.latest_checkpoint(session, tenant_id=healthy)
            unsigned = await service.latest_checkpoint(session, tenant_id=broken)
    assert (signed.last_sequence, unsigned.number) == (3, 1)
    [logged] = [log for log in logs if log["event"] == "audit.chain_broken"]
    assert (logged["chain_id"], logged.get("position")) == (broken.hex, position)


async def test_truncating_a_checkpointed_chain_is_detected(database_url: str) -> None:
    tenant_id, entries = await _chain(database_url, checkpoint=True)
    async with as_attacker(database_url) as session:
        chain = raw_uuid(session, tenant_id)
        await execute(
            session, "DELETE FROM audit_entries WHERE chain_id = :c AND sequence > 6", c=chain
        )
        await execute(
            session,
            "UPDATE audit_chain_heads SET sequence = 6, head_hash = :h WHERE chain_id = :c",
            c=chain,
            h=entries[5].entry_hash,
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (7, "entry_missing")


async def test_a_checkpoint_re_signed_with_another_key_is_refused(database_url: str) -> None:
    tenant_id, _ = await _chain(database_url, checkpoint=True)
    intruder = LocalEd25519Signer.generate(key_id="intruder")
    async with as_attacker(database_url) as session:
        await execute(
            session,
            "UPDATE audit_checkpoints SET key_id = :k, public_key = :p WHERE chain_id = :c",
            k=intruder.key_id,
            p=intruder.public_key_raw(),
            c=raw_uuid(session, tenant_id),
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (1, "checkpoint_invalid")


async def test_a_removed_chain_head_is_reported(database_url: str) -> None:
    tenant_id, _ = await _chain(database_url)
    async with as_attacker(database_url) as session:
        await execute(
            session,
            "DELETE FROM audit_chain_heads WHERE chain_id = :c",
            c=raw_uuid(session, tenant_id),
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None and report.problem.kind == "head_missing"


def _forged_row(
    chain_id: uuid.UUID, sequence: int, previous: bytes, digest: bytes | None
) -> dict[str, object]:
    fields = EntryFields(
        id=new_id(),
        chain_id=chain_id,
        sequence=sequence,
        previous_hash=previous,
        occurred_at=5,
        tenant_id=chain_id,
        actor_type="operator",
        actor_id="opr_forged",
        action="config.changed",
        target=None,
        source_ip=None,
        user_agent=None,
        before=None,
        after=None,
        detail=None,
    )
    row = {name: getattr(fields, name) for name in EntryFields.__slots__}
    row["entry_hash"] = entry_hash(fields) if digest is None else digest
    return row


async def _rewrite_from(
    session: object, chain_id: uuid.UUID, entries: list, *, position: int
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    previous = entries[position - 2].entry_hash
    for entry in entries[position - 1 :]:
        fields = fields_of(entry)
        changes = {"previous_hash": previous}
        if entry.sequence == position:
            changes["detail"] = '{"index":"rewritten"}'
        rewritten = EntryFields(
            **{**{n: getattr(fields, n) for n in EntryFields.__slots__}, **changes}
        )
        digest = entry_hash(rewritten)
        await session.execute(
            text(
                "UPDATE audit_entries SET detail = :d, previous_hash = :p, entry_hash = :h"
                " WHERE id = :id"
            ),
            {"d": rewritten.detail, "p": previous, "h": digest, "id": raw_uuid(session, entry.id)},
        )
        previous = digest
    await session.execute(
        text("UPDATE audit_chain_heads SET head_hash = :h WHERE chain_id = :c"),
        {"h": previous, "c": raw_uuid(session, chain_id)},
    )


async def test_appends_in_one_transaction_share_the_lock_and_survive_a_savepoint(
    database_url: str,
) -> None:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        async with unit_of_work.begin() as session:
            for index in range(3):
                await service.append(
                    session,
                    tenant_id=tenant_id,
                    action="batch.item",
                    occurred_at=index,
                    actor_type="system",
                    actor_id=None,
                )
            with pytest.raises(RuntimeError):
                await _append_in_failing_savepoint(session, tenant_id)
            last = await service.append(
                session,
                tenant_id=tenant_id,
                action="after.savepoint",
                occurred_at=10,
                actor_type="system",
                actor_id=None,
            )
        assert last.sequence == 4
        async with unit_of_work.begin() as session:
            page = await service.list_entries(session, tenant_id=tenant_id, cursor=None, limit=10)
    assert [entry.action for entry in page.items] == ["batch.item"] * 3 + ["after.savepoint"]
    assert (await _verify(database_url, tenant_id)).ok


async def _append_in_failing_savepoint(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    async with session.begin_nested():
        await service.append(
            session,
            tenant_id=tenant_id,
            action="rolled.back",
            occurred_at=9,
            actor_type="system",
            actor_id=None,
        )
        raise RuntimeError("the savepoint's act failed")
