"""The audit log through the SDK against the real application, on both backends: a live
`audit:read` key and an operator with `audit.read` read the chain, checkpoints and proofs
(which verify), and test keys, keys without the scope and operators without the
permission get typed refusals."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from audit.audit_support import checkpoint_chain, opened
from billfold.audit import merkle
from billfold.audit.signing import verify_signature
from billfold.client import ConflictError, NotFoundError, PermissionDeniedError
from billfold.client.types import AuditCheckpoint, AuditInclusionProof
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from client.sdk_support import running


def _checkpoint(database_url: str, tenant_id: uuid.UUID) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await checkpoint_chain(unit_of_work, tenant_id)

    asyncio.run(run())


def _verifies(checkpoint: AuditCheckpoint) -> bool:
    return verify_signature(
        public_key=bytes.fromhex(checkpoint["public_key"]),
        signature=bytes.fromhex(checkpoint["signature"]),
        message=checkpoint["message"].encode(),
    )


def _proves(proof: AuditInclusionProof) -> bool:
    return merkle.verify_inclusion(
        leaf=merkle.leaf_hash(bytes.fromhex(proof["entry"]["entry_hash"])),
        index=proof["leaf_index"],
        tree_size=proof["tree_size"],
        proof=[bytes.fromhex(step) for step in proof["inclusion_path"]],
        root=bytes.fromhex(proof["checkpoint"]["root_hash"]),
    )


def test_a_live_key_reads_the_chain_checkpoints_and_proofs(database_url: str) -> None:
    with (
        running(database_url) as server,
        server.billfold([Scope.AUDIT_READ], mode=Mode.LIVE) as auditor,
    ):
        first = auditor.audit.list_entries(limit=2)
        assert [entry["sequence"] for entry in first["items"]] == [1, 2]
        assert first["items"][0]["action"] == "tenant.created"
        assert first["items"][0]["tenant_id"] == server.tenant_id
        entries = list(auditor.audit.iterate_entries(limit=2))
        assert entries[:2] == first["items"]
        assert [entry["sequence"] for entry in entries] == list(range(1, len(entries) + 1))
        assert auditor.audit.get_entry(entries[1]["id"]) == entries[1]

        with pytest.raises(ConflictError) as early:
            auditor.audit.prove_entry(entries[0]["id"])
        assert early.value.code == "entry_not_checkpointed"
        with pytest.raises(NotFoundError):
            auditor.audit.latest_checkpoint()

        _checkpoint(server.database_url, server.tenant.tenant.id)
        latest = auditor.audit.latest_checkpoint()
        assert latest["last_sequence"] == len(entries) and _verifies(latest)
        assert auditor.audit.get_checkpoint(latest["id"]) == latest
        proof = auditor.audit.prove_entry(entries[-1]["id"])
        assert proof["entry"] == entries[-1] and proof["checkpoint"] == latest
        assert _proves(proof)

        with pytest.raises(NotFoundError) as missing:
            auditor.audit.get_entry(f"aud_{uuid.uuid4().hex}")
        assert missing.value.code == "audit_entry_not_found"
        with pytest.raises(NotFoundError) as no_checkpoint:
            auditor.audit.get_checkpoint(f"ckp_{uuid.uuid4().hex}")
        assert no_checkpoint.value.code == "audit_checkpoint_not_found"


def test_test_keys_and_keys_without_the_scope_are_refused(database_url: str) -> None:
    with running(database_url) as server:
        with server.billfold([Scope.AUDIT_READ], mode=Mode.TEST) as test_key:
            with pytest.raises(PermissionDeniedError) as sandbox:
                test_key.audit.list_entries()
            assert sandbox.value.code == "live_key_required"
        with server.billfold([Scope.LEDGER_READ], mode=Mode.LIVE) as other:
            with pytest.raises(PermissionDeniedError) as scope:
                other.audit.latest_checkpoint()
            assert scope.value.code == "insufficient_scope"


def test_an_operator_with_audit_read_reads_the_log(database_url: str) -> None:
    with running(database_url) as server:
        with server.signed_in_operator([Role.COMPLIANCE_OFFICER]) as officer:
            entries = list(officer.audit.iterate_entries(limit=3))
            assert entries[0]["action"] == "tenant.created"
            page = officer.audit.list_entries(limit=1)
            assert page["items"] == entries[:1] and page["next_cursor"] is not None
            with pytest.raises(ConflictError) as early:
                officer.audit.prove_entry(entries[0]["id"])
            assert early.value.code == "entry_not_checkpointed"
            with pytest.raises(NotFoundError):
                officer.audit.latest_checkpoint()
            _checkpoint(server.database_url, server.tenant.tenant.id)
            latest = officer.audit.latest_checkpoint()
            assert _verifies(latest)
            proof = officer.audit.prove_entry(entries[0]["id"])
            assert proof["leaf_index"] == 0 and _proves(proof)
        with (
            server.signed_in_operator([Role.SUPPORT]) as support,
            pytest.raises(PermissionDeniedError),
        ):
            support.audit.list_entries()
