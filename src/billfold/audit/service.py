"""Appending to the audit log, checkpointing it, proving inclusion, reading it.

**One chain per tenant, plus one platform chain** for events with no tenant (its chain id
is the nil UUID). A tenant's chain can be verified, checkpointed and handed to that tenant
(or its auditor) alone, and appenders of different tenants never wait for each other.

**Appends join the caller's transaction** (:func:`append` flushes, never commits), so an
entry commits atomically with the act it records. Appenders to one chain are serialized
by its head row: ``SELECT … FOR UPDATE`` on PostgreSQL, the database write lock that
``BEGIN IMMEDIATE`` takes on SQLite. The lock is held until the caller commits, so a chain
can never fork; the price is that one tenant's audited acts commit one at a time.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import merkle
from billfold.audit.context import Source, current_source
from billfold.audit.encoding import (
    PLATFORM_CHAIN_ID,
    ZERO_HASH,
    CheckpointFields,
    EntryFields,
    checkpoint_message,
    encode_entry,
    entry_hash,
)
from billfold.audit.errors import (
    AuditChainBroken,
    AuditCheckpointNotFound,
    AuditEntryNotFound,
    EntryNotCheckpointed,
)
from billfold.audit.models import (
    ACTION_LENGTH_MAX,
    ACTOR_ID_LENGTH_MAX,
    ACTOR_TYPE_LENGTH_MAX,
    JSON_LENGTH_MAX,
    TARGET_LENGTH_MAX,
    AuditChainHead,
    AuditCheckpoint,
    AuditEntry,
)
from billfold.audit.repository import AuditRepository, fields_of
from billfold.kit.errors import InvariantViolation, invariant
from billfold.kit.ids import new_id
from billfold.kit.pagination import (
    InvalidCursor,
    Page,
    clamp_page_size,
    decode_cursor,
    encode_cursor,
)
from billfold.kit.signing import Signer

__all__ = [
    "CHECKPOINT_ENTRIES_MAX",
    "InclusionProof",
    "JSONObject",
    "append",
    "canonical_json",
    "chain_of",
    "create_checkpoint",
    "fields_of_checkpoint",
    "get_checkpoint",
    "get_entry",
    "latest_checkpoint",
    "list_entries",
    "prove_inclusion",
    "signed_message",
]

_SEQUENCE_MAX = (1 << 63) - 1
"""The largest sequence a chain can reach (a signed 64-bit column on both backends)."""
CHECKPOINT_ENTRIES_MAX = 1_000_000
"""The most entries one checkpoint may cover (the setting is bounded by it): a proof
loads its checkpoint's leaf hashes, 32 bytes each."""
JSONObject = Mapping[str, object]


def chain_of(tenant_id: uuid.UUID | None) -> uuid.UUID:
    """The chain a tenant's events go to; the platform chain for None."""
    return PLATFORM_CHAIN_ID if tenant_id is None else tenant_id


def canonical_json(value: JSONObject | None) -> str | None:
    """Sorted keys, no spaces, UTF-8, no NaN: one text per value, hashed as stored."""
    if value is None:
        return None
    text = json.dumps(
        dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    invariant(len(text.encode()) <= JSON_LENGTH_MAX, "audit JSON is small facts")
    return text


def _bounded(value: str | None, length_max: int, name: str) -> str | None:
    invariant(value is None or 1 <= len(value) <= length_max, f"audit {name} is bounded")
    return value


_LOCKED_HEADS = "billfold.audit.locked_heads"


async def _locked_head(
    session: AsyncSession, *, chain_id: uuid.UUID, tenant_id: uuid.UUID | None, now_ns: int
) -> AuditChainHead:
    """The chain's head, locked for the rest of the session's transaction. Locked once per
    transaction: later appends in it reuse the row (nobody else can move it meanwhile)."""
    transaction = session.get_transaction()
    invariant(transaction is not None, "audit entries are appended inside a transaction")
    locked: tuple[object, dict[uuid.UUID, AuditChainHead]] | None
    locked = session.info.get(_LOCKED_HEADS)
    if locked is None or locked[0] is not transaction:
        locked = (transaction, {})
        session.info[_LOCKED_HEADS] = locked
    head = locked[1].get(chain_id)
    if head is not None and not inspect(head).expired_attributes:
        return head  # (expired: a savepoint rolled back; read it again below)
    repository = AuditRepository(session)
    head = await repository.lock_head(chain_id)
    if head is None:
        await repository.create_head(chain_id=chain_id, tenant_id=tenant_id, now_ns=now_ns)
        head = await repository.lock_head(chain_id)
    invariant(head is not None, "a chain head exists once created")
    assert head is not None  # for mypy; the invariant holds under -O
    locked[1][chain_id] = head
    return head


async def append(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    action: str,
    occurred_at: int,
    actor_type: str | None,
    actor_id: str | None,
    target: str | None = None,
    before: JSONObject | None = None,
    after: JSONObject | None = None,
    detail: JSONObject | None = None,
    source: Source | None = None,
) -> AuditEntry:
    """Append one entry to the tenant's chain (the platform's for None) in the caller's
    transaction: the chain's head is locked until that transaction ends, and the entry is
    written at its next flush or commit. ``source`` defaults to the request being served
    (``audit.context``)."""
    _bounded(action, ACTION_LENGTH_MAX, "action")
    _bounded(actor_type, ACTOR_TYPE_LENGTH_MAX, "actor type")
    _bounded(actor_id, ACTOR_ID_LENGTH_MAX, "actor id")
    _bounded(target, TARGET_LENGTH_MAX, "target")
    origin = current_source() if source is None else source
    chain_id = chain_of(tenant_id)
    head = await _locked_head(session, chain_id=chain_id, tenant_id=tenant_id, now_ns=occurred_at)
    fields = EntryFields(
        id=new_id(),
        chain_id=chain_id,
        sequence=head.sequence + 1,
        previous_hash=head.head_hash,
        occurred_at=occurred_at,
        tenant_id=tenant_id,
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        target=target,
        source_ip=origin.ip,
        user_agent=origin.user_agent,
        before=canonical_json(before),
        after=canonical_json(after),
        detail=canonical_json(detail),
    )
    digest = entry_hash(fields)
    entry = AuditEntry(
        id=fields.id,
        chain_id=chain_id,
        sequence=fields.sequence,
        tenant_id=tenant_id,
        occurred_at=occurred_at,
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        target=target,
        source_ip=fields.source_ip,
        user_agent=fields.user_agent,
        before=fields.before,
        after=fields.after,
        detail=fields.detail,
        previous_hash=fields.previous_hash,
        entry_hash=digest,
    )
    # Written at the caller's next flush or commit, many entries in one INSERT.
    session.add(entry)
    head.sequence = fields.sequence
    head.head_hash = digest
    head.updated_at = occurred_at
    return entry


async def _covered_root(
    repository: AuditRepository, *, head: AuditChainHead, last_sequence: int
) -> tuple[bytes, bytes]:
    """The Merkle root over the entries after the head's last checkpoint up to
    ``last_sequence`` and the last one's hash, after checking every one of them: a
    checkpoint must never bless a tampered range."""
    first = head.checkpoint_sequence + 1
    # The newest checkpoint, not the one the head names: a head rewound past checkpoints
    # that exist would sign a second checkpoint of the same number.
    last_checkpoint = await repository.latest_checkpoint(head.chain_id)
    if last_checkpoint is None:
        signed, previous = (0, 0), ZERO_HASH
    else:
        signed = (last_checkpoint.number, last_checkpoint.last_sequence)
        previous = last_checkpoint.head_hash
    if signed != (head.checkpoint_number, head.checkpoint_sequence):
        raise AuditChainBroken("The chain's last checkpoint is missing or moved.")
    builder = merkle.RootBuilder()
    expected = first
    async for stored in repository.stream_entries(
        chain_id=head.chain_id, first_sequence=first, last_sequence=last_sequence
    ):
        fields = stored.fields
        intact = fields.sequence == expected and fields.previous_hash == previous
        if not intact or not stored.hash_matches():
            raise AuditChainBroken(
                f"The chain does not verify at position {expected}.", position=expected
            )
        builder.add(merkle.leaf_hash(stored.entry_hash))
        previous = stored.entry_hash
        expected += 1
    if expected != last_sequence + 1:
        raise AuditChainBroken(
            f"The chain does not verify at position {expected}.", position=expected
        )
    return builder.root(), previous


async def create_checkpoint(
    session: AsyncSession,
    *,
    chain_id: uuid.UUID,
    signer: Signer,
    now_ns: int,
    entries_max: int,
) -> AuditCheckpoint | None:
    """Sign a checkpoint over the chain's entries since its last one (at most
    ``entries_max`` of them); None when there are none. Holds the chain's head lock."""
    invariant(1 <= entries_max <= CHECKPOINT_ENTRIES_MAX, "a checkpoint is bounded")
    await session.flush()  # appends of this transaction first: the lock re-reads the head
    repository = AuditRepository(session)
    head = await repository.lock_head(chain_id)
    if head is None or head.sequence <= head.checkpoint_sequence:
        return None
    last = min(head.sequence, head.checkpoint_sequence + entries_max)
    root, head_hash = await _covered_root(repository, head=head, last_sequence=last)
    fields = CheckpointFields(
        chain_id=chain_id,
        number=head.checkpoint_number + 1,
        first_sequence=head.checkpoint_sequence + 1,
        last_sequence=last,
        root_hash=root,
        head_hash=head_hash,
        previous_hash=head.checkpoint_hash,
        created_at=now_ns,
        key_id=signer.key_id,
    )
    message = checkpoint_message(fields)
    checkpoint = AuditCheckpoint(
        id=new_id(),
        chain_id=chain_id,
        tenant_id=head.tenant_id,
        number=fields.number,
        first_sequence=fields.first_sequence,
        last_sequence=fields.last_sequence,
        root_hash=root,
        head_hash=head_hash,
        previous_hash=fields.previous_hash,
        checkpoint_hash=hashlib.sha256(message).digest(),
        created_at=now_ns,
        key_id=signer.key_id,
        public_key=signer.public_key_raw(),
        signature=signer.sign(message),
    )
    await repository.add_checkpoint(checkpoint)
    head.checkpoint_number = fields.number
    head.checkpoint_sequence = last
    head.checkpoint_hash = checkpoint.checkpoint_hash
    head.updated_at = now_ns
    await repository.flush()
    return checkpoint


def fields_of_checkpoint(checkpoint: AuditCheckpoint) -> CheckpointFields:
    return CheckpointFields(
        chain_id=checkpoint.chain_id,
        number=checkpoint.number,
        first_sequence=checkpoint.first_sequence,
        last_sequence=checkpoint.last_sequence,
        root_hash=bytes(checkpoint.root_hash),
        head_hash=bytes(checkpoint.head_hash),
        previous_hash=bytes(checkpoint.previous_hash),
        created_at=checkpoint.created_at,
        key_id=checkpoint.key_id,
    )


def signed_message(checkpoint: AuditCheckpoint) -> bytes:
    """The exact text a stored checkpoint's signature covers. A row no message can come
    from (a key id with a space, a time outside u64: only tampering writes them) is a
    broken chain, 409, as `verify` reports it, not a server error."""
    try:
        return checkpoint_message(fields_of_checkpoint(checkpoint))
    except InvariantViolation as error:
        raise AuditChainBroken("The stored checkpoint is malformed.") from error


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """That an entry is leaf ``leaf_index`` of the tree a signed checkpoint's root closes."""

    entry: AuditEntry
    encoding: bytes
    """The entry's canonical bytes: SHA-256 of them is its entry hash."""
    leaf_index: int
    tree_size: int
    path: list[bytes]
    checkpoint: AuditCheckpoint
    checkpoint_message: bytes


async def prove_inclusion(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, entry_id: uuid.UUID
) -> InclusionProof:
    """An RFC 9162 inclusion proof of an entry of the tenant's chain in the checkpoint
    covering it; 404 for an entry of any other chain, 409 before a checkpoint covers it."""
    chain_id = chain_of(tenant_id)
    repository = AuditRepository(session)
    entry = await repository.get_entry(chain_id=chain_id, entry_id=entry_id)
    if entry is None:
        raise AuditEntryNotFound()
    checkpoint = await repository.checkpoint_covering(chain_id=chain_id, sequence=entry.sequence)
    if checkpoint is None:
        raise EntryNotCheckpointed("No signed checkpoint covers this entry yet; try later.")
    hashes = await repository.entry_hashes(
        chain_id=chain_id,
        first_sequence=checkpoint.first_sequence,
        last_sequence=checkpoint.last_sequence,
    )
    expected = list(range(checkpoint.first_sequence, checkpoint.last_sequence + 1))
    leaves = [merkle.leaf_hash(bytes(digest)) for _, digest in hashes]
    index = entry.sequence - checkpoint.first_sequence
    broken = "The stored entries no longer match their checkpoint."
    try:
        encoding = encode_entry(fields_of(entry))
    except InvariantViolation as error:  # fields no entry can have: only tampering writes them
        raise AuditChainBroken(broken) from error
    intact = [sequence for sequence, _ in hashes] == expected and (
        hashlib.sha256(encoding).digest() == entry.entry_hash
    )
    if not intact or merkle.tree_root(leaves) != checkpoint.root_hash:
        raise AuditChainBroken(broken)
    return InclusionProof(
        entry=entry,
        encoding=encoding,
        leaf_index=index,
        tree_size=len(leaves),
        path=merkle.inclusion_proof(leaves, index),
        checkpoint=checkpoint,
        checkpoint_message=signed_message(checkpoint),
    )


async def list_entries(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, cursor: str | None, limit: int | None
) -> Page[AuditEntry]:
    """The chain's entries in sequence order, one bounded page at a time."""
    page_size = clamp_page_size(limit)
    after = 0
    if cursor is not None:
        values = decode_cursor(cursor)
        if len(values) != 1 or type(values[0]) is not int or not 0 <= values[0] <= _SEQUENCE_MAX:
            raise InvalidCursor("The cursor is malformed.")
        after = values[0]
    rows = await AuditRepository(session).list_entries(
        chain_id=chain_of(tenant_id), after_sequence=after, limit=page_size + 1
    )
    items = list(rows[:page_size])
    next_cursor = encode_cursor([items[-1].sequence]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


async def get_entry(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, entry_id: uuid.UUID
) -> AuditEntry:
    entry = await AuditRepository(session).get_entry(
        chain_id=chain_of(tenant_id), entry_id=entry_id
    )
    if entry is None:
        raise AuditEntryNotFound()
    return entry


async def get_checkpoint(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, checkpoint_id: uuid.UUID
) -> AuditCheckpoint:
    checkpoint = await AuditRepository(session).get_checkpoint(
        chain_id=chain_of(tenant_id), checkpoint_id=checkpoint_id
    )
    if checkpoint is None:
        raise AuditCheckpointNotFound()
    return checkpoint


async def latest_checkpoint(
    session: AsyncSession, *, tenant_id: uuid.UUID | None
) -> AuditCheckpoint:
    checkpoint = await AuditRepository(session).latest_checkpoint(chain_of(tenant_id))
    if checkpoint is None:
        raise AuditCheckpointNotFound("The chain has no checkpoint yet.")
    return checkpoint
