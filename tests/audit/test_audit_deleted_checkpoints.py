"""An attacker with raw database access deletes signed checkpoints (the newest one, or all
of them) so that the entries they covered look merely unsigned, ready to be rewritten:
`verify` reports it, as the chain head still names the last checkpoint signed."""

from __future__ import annotations

import uuid

import pytest

from audit.audit_support import (
    append_entries,
    as_attacker,
    audit_service,
    checkpoint_chain,
    execute,
    opened,
    raw_uuid,
)
from billfold.audit.verify import ChainReport
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio


async def _verify(database_url: str, chain_id: uuid.UUID) -> ChainReport:
    async with opened(database_url) as unit_of_work:
        [report] = await audit_service(unit_of_work).verify(chain_ids=[chain_id])
        return report


async def _two_checkpoints(database_url: str) -> uuid.UUID:
    tenant_id = new_id()
    async with opened(database_url) as unit_of_work:
        await append_entries(unit_of_work, tenant_id=tenant_id, count=4)
        await checkpoint_chain(unit_of_work, tenant_id)
        await append_entries(unit_of_work, tenant_id=tenant_id, count=4, start_ns=100)
        await checkpoint_chain(unit_of_work, tenant_id)
    report = await _verify(database_url, tenant_id)
    assert report.ok and report.checkpoints_checked == 2
    return tenant_id


@pytest.mark.parametrize(
    ("deleted", "position", "checkpoints_left"),
    [("number = 2", 5, 1), ("number >= 1", 1, 0)],
    ids=["the-newest", "all"],
)
async def test_a_deleted_checkpoint_is_detected(
    database_url: str, deleted: str, position: int, checkpoints_left: int
) -> None:
    tenant_id = await _two_checkpoints(database_url)
    async with as_attacker(database_url) as session:
        await execute(
            session,
            f"DELETE FROM audit_checkpoints WHERE chain_id = :c AND {deleted}",
            c=raw_uuid(session, tenant_id),
        )
    report = await _verify(database_url, tenant_id)
    assert report.problem is not None
    assert (report.problem.position, report.problem.kind) == (position, "checkpoint_missing")
    assert report.checkpoints_checked == checkpoints_left
    assert report.entries_checked == 8
