"""The audit log's facade for the application and the command line: who signs
checkpoints, which keys a verifier trusts, checkpointing and verifying over a unit of work.

The signer is a seam: ``AuditService(signer_provider=...)`` takes any zero-argument
callable returning a :class:`billfold.kit.signing.Signer` (the key hierarchy's, once it
exists); :meth:`AuditService.from_settings` uses the local Ed25519 key
(``billfold.audit.signing``). It is called at most once, when first needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import structlog

from billfold.audit.repository import AuditRepository
from billfold.audit.signing import load_local_signer
from billfold.audit.tasks import checkpoint_due
from billfold.audit.verify import ChainReport, verify_chain
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.settings import Settings
from billfold.kit.signing import Signer

__all__ = ["AuditService", "SignerProvider", "TrustedKeysProvider"]

SignerProvider = Callable[[], Signer]
TrustedKeysProvider = Callable[[], Mapping[str, bytes]]
CHAINS_VERIFIED_MAX = 1_000_000

log = structlog.get_logger(__name__)


class AuditService:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        *,
        signer_provider: SignerProvider,
        checkpoint_entries_max: int,
        trusted_keys_provider: TrustedKeysProvider | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._signer_provider = signer_provider
        self._signer: Signer | None = None
        self._trusted_keys_provider = trusted_keys_provider
        self._entries_max = checkpoint_entries_max
        self._clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, unit_of_work: UnitOfWork, settings: Settings) -> AuditService:
        return cls(
            unit_of_work,
            signer_provider=lambda: load_local_signer(
                key=settings.audit_signing_key, key_path=settings.audit_signing_key_path
            ),
            checkpoint_entries_max=settings.audit_checkpoint_entries_max,
        )

    @property
    def unit_of_work(self) -> UnitOfWork:
        return self._unit_of_work

    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = self._signer_provider()
        return self._signer

    def trusted_keys(self) -> Mapping[str, bytes]:
        """Key id → raw Ed25519 public key: the provider's, or the signer's own key."""
        if self._trusted_keys_provider is not None:
            return self._trusted_keys_provider()
        signer = self.signer()
        return {signer.key_id: signer.public_key_raw()}

    async def checkpoint_due(self) -> int:
        return await checkpoint_due(
            self._unit_of_work,
            signer=self.signer(),
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
        keys = self.trusted_keys() if trusted_keys is None else trusted_keys
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
