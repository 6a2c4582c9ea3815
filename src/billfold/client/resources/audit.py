"""The tenant's audit log: its hash chain, signed checkpoints and inclusion proofs.

`Audit` is for a **live** API key with `audit:read` (a test key is a
`PermissionDeniedError`); `OperatorAudit` for an operator with the permission `audit.read`
(admin, compliance officer). A proof of an entry no checkpoint covers yet is a
`ConflictError` `entry_not_checkpointed`; verify proofs with `billfold.audit.merkle` or any
RFC 9162 implementation, and checkpoints against a public key you pinned yourself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    AuditCheckpoint,
    AuditEntry,
    AuditEntryPage,
    AuditInclusionProof,
)

__all__ = ["Audit", "OperatorAudit"]


class _AuditLog(Resource):
    _entries_path = ""

    def list_entries(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> AuditEntryPage:
        """The tenant's entries in chain order."""
        params = without_none({"limit": limit, "cursor": cursor})
        answer = self._transport.request("GET", self._entries_path, params=params)
        return cast(AuditEntryPage, answer)

    def iterate_entries(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[AuditEntry]:
        return iterate(
            lambda cursor: self.list_entries(limit=limit, cursor=cursor), pages_max=pages_max
        )


class Audit(_AuditLog):
    _entries_path = "/v1/audit/entries"

    def get_entry(self, entry_id: str) -> AuditEntry:
        path = f"/v1/audit/entries/{path_id(entry_id)}"
        return cast(AuditEntry, self._transport.request("GET", path))

    def prove_entry(self, entry_id: str) -> AuditInclusionProof:
        path = f"/v1/audit/entries/{path_id(entry_id)}/proof"
        return cast(AuditInclusionProof, self._transport.request("GET", path))

    def latest_checkpoint(self) -> AuditCheckpoint:
        """The chain's most recent signed checkpoint (`NotFoundError` before the first)."""
        answer = self._transport.request("GET", "/v1/audit/checkpoints/latest")
        return cast(AuditCheckpoint, answer)

    def get_checkpoint(self, checkpoint_id: str) -> AuditCheckpoint:
        path = f"/v1/audit/checkpoints/{path_id(checkpoint_id)}"
        return cast(AuditCheckpoint, self._transport.request("GET", path))


class OperatorAudit(_AuditLog):
    _entries_path = "/v1/operators/audit/entries"

    def prove_entry(self, entry_id: str) -> AuditInclusionProof:
        path = f"/v1/operators/audit/entries/{path_id(entry_id)}/proof"
        return cast(AuditInclusionProof, self._transport.request("GET", path))

    def latest_checkpoint(self) -> AuditCheckpoint:
        answer = self._transport.request("GET", "/v1/operators/audit/checkpoints/latest")
        return cast(AuditCheckpoint, answer)
