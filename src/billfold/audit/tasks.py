"""Background work for the audit log: signing checkpoints for chains with new entries.

``checkpoint_due`` is what a worker calls on a schedule. Until ``billfold worker`` exists,
``billfold serve`` runs it every ``BILLFOLD_AUDIT_CHECKPOINT_INTERVAL_S`` (and
``billfold audit checkpoint`` runs it once, on demand). Several processes may run it at
once: each chain's head lock lets one of them sign and the others find nothing to do.
"""

from __future__ import annotations

import structlog

from billfold.audit.errors import AuditChainBroken
from billfold.audit.repository import AuditRepository
from billfold.audit.service import create_checkpoint
from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.signing import SigningKeys

__all__ = ["CHAINS_PER_RUN_MAX", "checkpoint_due"]

CHAINS_PER_RUN_MAX = 1_000

log = structlog.get_logger(__name__)


async def checkpoint_due(
    unit_of_work: UnitOfWork,
    *,
    signing_keys: SigningKeys,
    clock: Clock,
    entries_max: int,
    chains_max: int = CHAINS_PER_RUN_MAX,
) -> int:
    """Sign one checkpoint for each of up to ``chains_max`` chains with entries no
    checkpoint covers yet, each in its own transaction. Returns how many were signed; a
    chain with more than ``entries_max`` new entries is caught up over several runs. A
    chain that no longer verifies is logged (``audit.chain_broken``) and skipped.

    The active signing key is read in each checkpoint's own transaction, so a rotation
    committed by another process (``billfold keys rotate-signing``) signs the next one."""
    invariant(1 <= chains_max <= CHAINS_PER_RUN_MAX, "a run is bounded")
    async with unit_of_work.begin() as session:
        due = await AuditRepository(session).due_chains(limit=chains_max)
    signed = 0
    for chain_id in due:
        try:
            async with unit_of_work.begin() as session:
                now_ns = clock.now_ns()
                checkpoint = await create_checkpoint(
                    session,
                    chain_id=chain_id,
                    signer=await signing_keys.active_signer(session, now_ns=now_ns),
                    now_ns=now_ns,
                    entries_max=entries_max,
                )
        except AuditChainBroken as broken:
            # Never sign over tampering; the other chains still get their checkpoints.
            log.error("audit.chain_broken", chain_id=chain_id.hex, **broken.extensions)
            continue
        signed += checkpoint is not None
    return signed
