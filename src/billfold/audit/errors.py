"""The audit log's errors, rendered as problem+json with a stable ``code``::

BillfoldError
├── BadRequest
│   └── AuditSigningKeyInvalid   the configured signing key cannot be used (400)
├── Forbidden
│   └── LiveKeyRequired          the audit log is read with live keys only (403)
├── NotFound
│   ├── AuditEntryNotFound       no such entry in the caller's chain (404)
│   └── AuditCheckpointNotFound  no such checkpoint in the caller's chain (404)
└── Conflict
    ├── EntryNotCheckpointed     no signed checkpoint covers the entry yet (409)
    └── AuditChainBroken         the stored chain does not verify (409)
"""

from __future__ import annotations

from billfold.kit.errors import BadRequest, Conflict, Forbidden, NotFound

__all__ = [
    "AuditChainBroken",
    "AuditCheckpointNotFound",
    "AuditEntryNotFound",
    "AuditSigningKeyInvalid",
    "EntryNotCheckpointed",
    "LiveKeyRequired",
]


class AuditSigningKeyInvalid(BadRequest):
    code = "audit_signing_key_invalid"
    title = "Audit signing key invalid"


class LiveKeyRequired(Forbidden):
    code = "live_key_required"
    title = "Live key required"


class AuditEntryNotFound(NotFound):
    code = "audit_entry_not_found"
    title = "Audit entry not found"


class AuditCheckpointNotFound(NotFound):
    code = "audit_checkpoint_not_found"
    title = "Audit checkpoint not found"


class EntryNotCheckpointed(Conflict):
    code = "entry_not_checkpointed"
    title = "Entry not checkpointed yet"


class AuditChainBroken(Conflict):
    code = "audit_chain_broken"
    title = "Audit chain broken"
