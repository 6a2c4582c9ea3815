"""The audit log's facade for the application and the command line: who signs
checkpoints, which keys a verifier trusts, checkpointing and verifying over a unit of work.

The keys are a seam: ``AuditService(signing_keys=...)`` takes any
:class:`billfold.kit.signing.SigningKeys`. The application and the command line pass the
key hierarchy's platform keys of purpose ``audit``
(``billfold.keys.signing.HierarchySigningKeys``); this package never imports them. Both
the active signer and the trusted keys are read from the database each time, so a
rotation is seen by the next checkpoint and the next verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence

import structlog

from billfold.audit.repository import AuditRepository
from billfold.audit.tasks import checkpoint_due
from billfold.audit.verify import ChainReport, verify_chain
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.signing import SigningKeys

__all__ = ["AuditService"]

CHAINS_VERIFIED_MAX = 1_000_000

log = structlog.get_logger(__name__)


class AuditService:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        *,
        signing_keys: SigningKeys,
        checkpoint_entries_max: int,
        clock: Clock | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._signing_keys = signing_keys
        self._entries_max = checkpoint_entries_max
        self._clock = clock or SystemClock()

    @property
    def unit_of_work(self) -> UnitOfWork:
        return self._unit_of_work

    async def active_key(self) -> tuple[str, bytes]:
        """The id and raw Ed25519 public key of the key that signs checkpoints now."""
        async with self._unit_of_work.begin() as session:
            signer = await self._signing_keys.active_signer(session, now_ns=self._clock.now_ns())
            return signer.key_id, signer.public_key_raw()

    async def trusted_keys(self) -> Mapping[str, bytes]:
        """Key id → raw Ed25519 public key of every published audit signing key."""
        async with self._unit_of_work.begin() as session:
            return dict(await self._signing_keys.trusted_keys(session))

    async def checkpoint_due(self) -> int:
        return await checkpoint_due(
            self._unit_of_work,
            signing_keys=self._signing_keys,
            clock=self._clock,
            entries_max=self._entries_max,
        )

    async def verify(
        self,
        *,
        chain_ids: Sequence[uuid.UUID] | None = None,
        trusted_keys: Mapping[str, bytes] | None = None,
    ) -> list[ChainReport]:
        """Verify the given chains (every chain when None), each over one snapshot."""
        keys = await self.trusted_keys() if trusted_keys is None else trusted_keys
        if chain_ids is None:
            async with self._unit_of_work.begin() as session:
                chain_ids = await AuditRepository(session).all_chain_ids()
        reports = []
        for chain_id in chain_ids[:CHAINS_VERIFIED_MAX]:
            async with self._unit_of_work.begin() as session:
                if session.get_bind().dialect.name == "postgresql":
                    # One snapshot: appends racing the verifier must not look like tampering.
                    await session.connection(
                        execution_options={"isolation_level": "REPEATABLE READ"}
                    )
                reports.append(await verify_chain(session, chain_id=chain_id, trusted_keys=keys))
        return reports

    @contextlib.asynccontextmanager
    async def checkpointing(self, *, interval_s: float) -> AsyncIterator[None]:
        """Sign due checkpoints every ``interval_s`` while the block runs."""
        task = asyncio.create_task(self._checkpoint_forever(interval_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _checkpoint_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                signed = await self.checkpoint_due()
            except Exception:  # retried next interval; a crash would stop checkpointing
                log.exception("audit.checkpoint_failed")
                continue
            if signed:
                log.info("audit.checkpoints_signed", count=signed)
