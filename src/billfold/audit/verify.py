"""Verifying a chain: every entry, every checkpoint, the head; the first bad position.

Read in one pass over the chain in sequence order, in bounded batches:

- entry ``n`` must have sequence ``n`` (a gap is a deleted entry, a repeat an inserted
  one), its stored hash must be SHA-256 of its canonical encoding (an edited entry), and
  its ``previous_hash`` must be entry ``n - 1``'s hash (an inserted, removed or reordered
  neighbour);
- checkpoint ``k`` must follow checkpoint ``k - 1`` (number, first sequence, previous
  hash), its hash must match its message, its key must be one the verifier trusts and its
  Ed25519 signature valid, and the Merkle root and head hash recomputed from the entries it
  covers must equal the signed ones;
- the chain's head row must point at the last entry and at the last checkpoint (a deleted
  checkpoint would otherwise leave the entries it covered looking merely unsigned).

What it cannot see: someone able to write the database can rewrite the entries *after* the
last checkpoint and recompute their hashes and the head row. Entries a signed checkpoint
covers cannot be changed, removed or reordered without the verifier noticing, as long as
the signing key is kept out of that someone's reach. Checkpoint often.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import merkle
from billfold.audit.encoding import ZERO_HASH, checkpoint_message
from billfold.audit.models import AuditCheckpoint
from billfold.audit.repository import AuditRepository, StoredEntry
from billfold.audit.service import fields_of_checkpoint
from billfold.audit.signing import verify_signature
from billfold.kit.errors import InvariantViolation

__all__ = ["ChainProblem", "ChainReport", "verify_chain"]

_CHECKPOINT_PAGE = 100


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first thing wrong with a chain."""

    position: int
    """The sequence number where the chain stops verifying."""
    kind: str
    """entry_missing, entry_unexpected, entry_modified, link_broken, checkpoint_invalid,
    checkpoint_mismatch, checkpoint_missing, head_missing or head_mismatch."""
    entry_id: uuid.UUID | None
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    chain_id: uuid.UUID
    entries_checked: int
    checkpoints_checked: int
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Checkpoints:
    """A chain's checkpoints in number order, fetched a page at a time."""

    def __init__(self, repository: AuditRepository, chain_id: uuid.UUID) -> None:
        self._repository = repository
        self._chain_id = chain_id
        self._after = 0

    async def __aiter__(self) -> AsyncIterator[AuditCheckpoint]:
        while True:
            page = await self._repository.checkpoints_page(
                chain_id=self._chain_id, after_number=self._after, limit=_CHECKPOINT_PAGE
            )
            for checkpoint in page:
                yield checkpoint
            if len(page) < _CHECKPOINT_PAGE:
                return
            self._after = page[-1].number


def _checkpoint_problem(
    checkpoint: AuditCheckpoint,
    *,
    number: int,
    previous_hash: bytes,
    previous_last: int,
    trusted_keys: Mapping[str, bytes],
) -> str | None:
    """Why this checkpoint cannot follow the previous one or is not validly signed."""
    if checkpoint.number != number:
        return f"checkpoint {number} is missing (found {checkpoint.number})"
    if checkpoint.first_sequence != previous_last + 1:
        return f"checkpoint {number} does not start where checkpoint {number - 1} ended"
    if bytes(checkpoint.previous_hash) != previous_hash:
        return f"checkpoint {number} does not link to checkpoint {number - 1}"
    try:
        message = checkpoint_message(fields_of_checkpoint(checkpoint))
    except InvariantViolation:
        return f"checkpoint {number} is malformed"
    if hashlib.sha256(message).digest() != bytes(checkpoint.checkpoint_hash):
        return f"checkpoint {number} was modified"
    key = trusted_keys.get(checkpoint.key_id)
    if key is None:
        return f"checkpoint {number} is signed by an untrusted key {checkpoint.key_id}"
    if not verify_signature(public_key=key, signature=bytes(checkpoint.signature), message=message):
        return f"checkpoint {number} has an invalid signature"
    return None


class _Verifier:
    def __init__(self, chain_id: uuid.UUID, trusted_keys: Mapping[str, bytes]) -> None:
        self.chain_id = chain_id
        self.trusted_keys = trusted_keys
        self.expected = 1
        self.previous = ZERO_HASH
        self.checkpoints_checked = 0
        self.problem: ChainProblem | None = None
        self.checkpoint: AuditCheckpoint | None = None
        self.builder = merkle.RootBuilder()
        self.checkpoint_previous = ZERO_HASH
        self.checkpoint_last = 0

    def fail(
        self,
        kind: str,
        detail: str,
        entry_id: uuid.UUID | None = None,
        *,
        position: int | None = None,
    ) -> None:
        self.problem = ChainProblem(
            position=self.expected if position is None else position,
            kind=kind,
            entry_id=entry_id,
            detail=detail,
        )

    def open_checkpoint(self, checkpoint: AuditCheckpoint | None) -> None:
        self.checkpoint = checkpoint
        self.builder = merkle.RootBuilder()
        if checkpoint is None:
            return
        why = _checkpoint_problem(
            checkpoint,
            number=self.checkpoints_checked + 1,
            previous_hash=self.checkpoint_previous,
            previous_last=self.checkpoint_last,
            trusted_keys=self.trusted_keys,
        )
        if why is not None:
            self.fail("checkpoint_invalid", why, position=checkpoint.first_sequence)

    def check_entry(self, stored: StoredEntry) -> None:
        fields = stored.fields
        if fields.sequence > self.expected:
            self.fail("entry_missing", f"entry {self.expected} is missing", fields.id)
        elif fields.sequence < self.expected:
            detail = f"a second entry claims position {fields.sequence}"
            self.fail("entry_unexpected", detail, fields.id)
        elif not stored.hash_matches():
            self.fail("entry_modified", "the entry does not match its hash", fields.id)
        elif fields.previous_hash != self.previous:
            self.fail("link_broken", "the entry does not follow the one before it", fields.id)

    def close_checkpoint_if_done(self, stored: bytes) -> bool:
        """Fold the entry into the open checkpoint; True when that checkpoint is complete."""
        checkpoint = self.checkpoint
        if checkpoint is None:
            return False
        self.builder.add(merkle.leaf_hash(stored))
        if self.expected != checkpoint.last_sequence:
            return False
        if self.builder.root() != bytes(checkpoint.root_hash) or stored != bytes(
            checkpoint.head_hash
        ):
            self.fail(
                "checkpoint_mismatch",
                f"entries {checkpoint.first_sequence}..{checkpoint.last_sequence} differ from"
                f" what checkpoint {checkpoint.number} signed",
                position=checkpoint.first_sequence,
            )
            return False
        self.checkpoints_checked += 1
        self.checkpoint_previous = bytes(checkpoint.checkpoint_hash)
        self.checkpoint_last = checkpoint.last_sequence
        return True


async def verify_chain(
    session: AsyncSession, *, chain_id: uuid.UUID, trusted_keys: Mapping[str, bytes]
) -> ChainReport:
    """Check one chain end to end; the report names the first bad position, if any."""
    repository = AuditRepository(session)
    verifier = _Verifier(chain_id, trusted_keys)
    checkpoints = aiter(_Checkpoints(repository, chain_id))
    verifier.open_checkpoint(await anext(checkpoints, None))
    async for stored in repository.stream_entries(
        chain_id=chain_id, first_sequence=1, last_sequence=None
    ):
        if verifier.problem is not None:
            break
        verifier.check_entry(stored)
        if verifier.problem is not None:
            break
        if verifier.close_checkpoint_if_done(stored.entry_hash):
            verifier.open_checkpoint(await anext(checkpoints, None))
        if verifier.problem is not None:
            break
        verifier.previous = stored.entry_hash
        verifier.expected += 1
    if verifier.problem is None:
        await _check_end(repository, verifier)
    return ChainReport(
        chain_id=chain_id,
        entries_checked=verifier.expected - 1,
        checkpoints_checked=verifier.checkpoints_checked,
        problem=verifier.problem,
    )


async def _check_end(repository: AuditRepository, verifier: _Verifier) -> None:
    """After the last entry: no checkpoint may reach further, and the head must agree."""
    last = verifier.expected - 1
    if verifier.checkpoint is not None:
        verifier.fail(
            "entry_missing",
            f"checkpoint {verifier.checkpoint.number} covers up to"
            f" {verifier.checkpoint.last_sequence}, the chain ends at {last}",
        )
        return
    head = await repository.get_head(verifier.chain_id)
    if head is None:
        if last > 0:
            verifier.fail("head_missing", "the chain's head row is missing")
        return
    if head.sequence != last or bytes(head.head_hash) != verifier.previous:
        verifier.fail(
            "head_mismatch",
            f"the head says {head.sequence} entries, the chain has {last}",
            position=min(head.sequence, last) + 1,
        )
        return
    # The head also names the last checkpoint signed: a deleted checkpoint (the newest,
    # or all of them) would otherwise leave its entries looking merely unsigned.
    signed = (head.checkpoint_number, head.checkpoint_sequence, bytes(head.checkpoint_hash))
    found = (verifier.checkpoints_checked, verifier.checkpoint_last, verifier.checkpoint_previous)
    if signed != found:
        verifier.fail(
            "checkpoint_missing" if head.checkpoint_number > found[0] else "head_mismatch",
            f"the head names checkpoint {head.checkpoint_number} (up to entry"
            f" {head.checkpoint_sequence}), the chain has {found[0]} (up to entry {found[1]})",
            position=min(head.checkpoint_sequence, found[1]) + 1,
        )
