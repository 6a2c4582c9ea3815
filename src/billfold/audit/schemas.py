"""The audit log's API models. Binary values are lowercase hex; times are ns since the
epoch as decimal strings (exact, and what the entry hash covers); before, after and detail
are the canonical JSON text exactly as hashed."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from billfold.audit.models import AuditCheckpoint, AuditEntry
from billfold.audit.service import InclusionProof
from billfold.kit.ids import format_id
from billfold.kit.pagination import Page

__all__ = [
    "CHECKPOINT_ID_PREFIX",
    "ENTRY_ID_PREFIX",
    "AuditEntryPage",
    "AuditEntryResponse",
    "CheckpointResponse",
    "InclusionProofResponse",
]

ENTRY_ID_PREFIX = "aud"
CHECKPOINT_ID_PREFIX = "ckp"
TENANT_ID_PREFIX = "ten"


def _tenant(tenant_id: uuid.UUID | None) -> str | None:
    return None if tenant_id is None else format_id(TENANT_ID_PREFIX, tenant_id)


class AuditEntryResponse(BaseModel):
    id: str = Field(description="aud_<32 hex>")
    chain_id: str = Field(description="The chain: the tenant's UUID as 32 hex.")
    sequence: int = Field(description="Position in the chain, from 1.")
    tenant_id: str | None
    occurred_at_ns: str
    actor_type: str | None
    actor_id: str | None
    action: str
    target: str | None
    source_ip: str | None
    user_agent: str | None
    before: str | None = Field(description="Canonical JSON text, as hashed.")
    after: str | None = Field(description="Canonical JSON text, as hashed.")
    detail: str | None = Field(description="Canonical JSON text, as hashed.")
    previous_hash: str
    entry_hash: str

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> AuditEntryResponse:
        return cls(
            id=format_id(ENTRY_ID_PREFIX, entry.id),
            chain_id=entry.chain_id.hex,
            sequence=entry.sequence,
            tenant_id=_tenant(entry.tenant_id),
            occurred_at_ns=str(entry.occurred_at),
            actor_type=entry.actor_type,
            actor_id=entry.actor_id,
            action=entry.action,
            target=entry.target,
            source_ip=entry.source_ip,
            user_agent=entry.user_agent,
            before=entry.before,
            after=entry.after,
            detail=entry.detail,
            previous_hash=bytes(entry.previous_hash).hex(),
            entry_hash=bytes(entry.entry_hash).hex(),
        )


class AuditEntryPage(BaseModel):
    items: list[AuditEntryResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[AuditEntry]) -> AuditEntryPage:
        items = [AuditEntryResponse.from_entry(entry) for entry in page.items]
        return cls(items=items, next_cursor=page.next_cursor)


class CheckpointResponse(BaseModel):
    id: str = Field(description="ckp_<32 hex>")
    chain_id: str
    number: int
    first_sequence: int
    last_sequence: int
    root_hash: str
    head_hash: str
    previous_hash: str
    checkpoint_hash: str = Field(description="SHA-256 of `message`.")
    created_at_ns: str
    key_id: str
    public_key: str = Field(description="Raw Ed25519 key; pin your own copy, do not trust this.")
    signature: str = Field(description="Ed25519 over the bytes of `message`.")
    message: str = Field(description="The exact signed text (billfold.audit.checkpoint.v1).")

    @classmethod
    def from_checkpoint(cls, checkpoint: AuditCheckpoint, *, message: bytes) -> CheckpointResponse:
        return cls(
            id=format_id(CHECKPOINT_ID_PREFIX, checkpoint.id),
            chain_id=checkpoint.chain_id.hex,
            number=checkpoint.number,
            first_sequence=checkpoint.first_sequence,
            last_sequence=checkpoint.last_sequence,
            root_hash=bytes(checkpoint.root_hash).hex(),
            head_hash=bytes(checkpoint.head_hash).hex(),
            previous_hash=bytes(checkpoint.previous_hash).hex(),
            checkpoint_hash=bytes(checkpoint.checkpoint_hash).hex(),
            created_at_ns=str(checkpoint.created_at),
            key_id=checkpoint.key_id,
            public_key=bytes(checkpoint.public_key).hex(),
            signature=bytes(checkpoint.signature).hex(),
            message=message.decode("ascii"),
        )


class InclusionProofResponse(BaseModel):
    entry: AuditEntryResponse
    entry_encoding: str = Field(description="The entry's canonical bytes; SHA-256 = entry_hash.")
    leaf_index: int = Field(description="0-based: sequence - checkpoint.first_sequence.")
    tree_size: int
    inclusion_path: list[str] = Field(description="RFC 9162 PATH(leaf_index, D[tree_size]).")
    checkpoint: CheckpointResponse

    @classmethod
    def from_proof(cls, proof: InclusionProof) -> InclusionProofResponse:
        return cls(
            entry=AuditEntryResponse.from_entry(proof.entry),
            entry_encoding=proof.encoding.hex(),
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            inclusion_path=[step.hex() for step in proof.path],
            checkpoint=CheckpointResponse.from_checkpoint(
                proof.checkpoint, message=proof.checkpoint_message
            ),
        )
