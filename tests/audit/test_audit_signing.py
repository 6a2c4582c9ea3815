"""Checkpoints signed by the key hierarchy's "audit" signing keys: a rotation keeps earlier
checkpoints verifiable, an altered signature or a key the keystore does not vouch for is
refused, and the published JWKS alone is enough to verify (both backends)."""

from __future__ import annotations

import time
import uuid

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.audit_support import (
    SEED_HEX,
    append_entries,
    as_attacker,
    execute,
    opened,
    raw_uuid,
)
from billfold.audit import service
from billfold.audit.audit import AuditService
from billfold.audit.models import AuditCheckpoint
from billfold.audit.signing import LocalEd25519Signer, verify_signature
from billfold.keys.keyring import Keyring
from billfold.keys.models import SigningKey
from billfold.keys.service import KeyActor
from billfold.keys.signing import (
    HierarchySigningKeys,
    jwks_of,
    public_key_from_jwk,
    published_signing_keys,
    retire_signing_key,
    rotate_signing_key,
)
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import new_id, parse_id
from keys.keys_support import local_keyring

pytestmark = pytest.mark.anyio

# RFC 8032 section 7.1, test 1: this seed's public key and its signature of the empty message.
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_the_in_memory_signer_signs_as_rfc_8032_says() -> None:
    signer = LocalEd25519Signer.from_seed(bytes.fromhex(SEED_HEX), key_id="k")
    assert signer.public_key_raw().hex() == RFC8032_PUBLIC
    assert signer.sign(b"").hex() == RFC8032_SIGNATURE


def test_signatures_of_the_wrong_shape_do_not_verify() -> None:
    public = LocalEd25519Signer.generate(key_id="k").public_key_raw()
    assert not verify_signature(public_key=public, signature=b"short", message=b"")
    assert not verify_signature(public_key=public[:31], signature=bytes(64), message=b"")
    assert not verify_signature(public_key=public, signature=bytes(64), message=b"")


class _Hierarchy:
    """A signing-key tenant of its own (the PostgreSQL database is shared by tests) and a
    chain of its own, checkpointed the way ``audit.tasks.checkpoint_due`` does."""

    def __init__(self, unit_of_work: UnitOfWork, keyring: Keyring) -> None:
        self.unit_of_work = unit_of_work
        self.keyring = keyring
        self.key_tenant = uuid.uuid4()
        self.keys = HierarchySigningKeys(keyring, tenant_id=self.key_tenant, purpose="audit")
        self.audit = AuditService(unit_of_work, signing_keys=self.keys, checkpoint_entries_max=100)
        self.chain_id = new_id()

    async def checkpoint(self, count: int) -> AuditCheckpoint:
        await append_entries(self.unit_of_work, tenant_id=self.chain_id, count=count)
        async with self.unit_of_work.begin() as session:
            now_ns = time.time_ns()
            checkpoint = await service.create_checkpoint(
                session,
                chain_id=self.chain_id,
                signer=await self.keys.active_signer(session, now_ns=now_ns),
                now_ns=now_ns,
                entries_max=100,
            )
        assert checkpoint is not None
        return checkpoint

    async def rotate(self) -> SigningKey:
        async with self.unit_of_work.begin() as session:
            return await rotate_signing_key(
                session,
                keyring=self.keyring,
                tenant_id=self.key_tenant,
                purpose="audit",
                actor=KeyActor(),
                now_ns=time.time_ns(),
            )

    async def verify(self, trusted_keys: dict[str, bytes] | None = None) -> object:
        [report] = await self.audit.verify(chain_ids=[self.chain_id], trusted_keys=trusted_keys)
        return report


async def test_checkpoints_before_and_after_a_rotation_both_verify(database_url: str) -> None:
    async with opened(database_url) as unit_of_work:
        keys = _Hierarchy(unit_of_work, local_keyring())
        first = await keys.checkpoint(3)
        assert first.key_id.startswith("sig_")
        await keys.rotate()
        second = await keys.checkpoint(2)
        assert second.key_id.startswith("sig_") and second.key_id != first.key_id
        trusted = await keys.audit.trusted_keys()
        assert set(trusted) == {first.key_id, second.key_id}
        assert trusted[first.key_id] == bytes(first.public_key)
        report = await keys.verify()
        assert report.ok and report.checkpoints_checked == 2, report  # type: ignore[attr-defined]
        assert (await keys.audit.active_key())[0] == second.key_id

        # Retiring a key unpublishes it: what it signed no longer verifies against the JWKS.
        async with unit_of_work.begin() as session:
            await retire_signing_key(
                session,
                tenant_id=keys.key_tenant,
                key_id=first.key_id,
                actor=KeyActor(),
                now_ns=time.time_ns(),
            )
        retired = await keys.verify()
    problem = retired.problem  # type: ignore[attr-defined]
    assert (problem.position, problem.kind) == (1, "checkpoint_invalid")
    assert "untrusted key" in problem.detail


async def test_an_altered_checkpoint_signature_fails(database_url: str) -> None:
    async with opened(database_url) as unit_of_work:
        keys = _Hierarchy(unit_of_work, local_keyring())
        await keys.checkpoint(3)
        await keys.rotate()
        second = await keys.checkpoint(2)
        forged = bytearray(second.signature)
        forged[10] ^= 0x01
        async with as_attacker(database_url) as session:
            await execute(
                session,
                "UPDATE audit_checkpoints SET signature = :s WHERE id = :i",
                s=bytes(forged),
                i=raw_uuid(session, second.id),
            )
        report = await keys.verify()
    problem = report.problem  # type: ignore[attr-defined]
    assert (problem.position, problem.kind) == (4, "checkpoint_invalid")
    assert "invalid signature" in problem.detail


async def test_the_published_jwks_alone_verifies(database_url: str) -> None:
    async with opened(database_url) as unit_of_work:
        keys = _Hierarchy(unit_of_work, local_keyring())
        await keys.checkpoint(2)
        await keys.rotate()
        await keys.checkpoint(2)
        async with unit_of_work.begin() as session:
            document = jwks_of(await published_signing_keys(session, tenant_id=keys.key_tenant))
        # What an outsider holds: the JWKS document, nothing from Billfold's keystore.
        from_jwks = {
            jwk["kid"]: public_key_from_jwk(jwk).public_bytes(Encoding.Raw, PublicFormat.Raw)
            for jwk in document["keys"]
        }
        assert len(from_jwks) == 2
        assert (await keys.verify(from_jwks)).ok  # type: ignore[attr-defined]
        other = {kid: bytes(32) for kid in from_jwks}
        assert not (await keys.verify(other)).ok  # type: ignore[attr-defined]


async def test_a_public_key_written_into_the_database_is_not_trusted(database_url: str) -> None:
    """Someone who can write the database but not reach the keystore cannot add a key of
    their own: its encrypted seed would have to decrypt, bound to its own row."""
    async with opened(database_url) as unit_of_work:
        keys = _Hierarchy(unit_of_work, local_keyring())
        genuine = await keys.checkpoint(2)
        intruder = LocalEd25519Signer.generate(key_id="unused")
        async with unit_of_work.begin() as session:
            original = await session.get(SigningKey, parse_id("sig", genuine.key_id))
            assert original is not None
            forged = SigningKey(
                id=new_id(),
                tenant_id=keys.key_tenant,
                purpose="audit",
                version=original.version + 1,
                status="verify_only",
                public_key=intruder.public_key_raw(),
                encrypted_private_key=original.encrypted_private_key,  # copied, other row
                created_at=original.created_at,
                retired_at=None,
            )
            session.add(forged)
        trusted = await keys.audit.trusted_keys()
    assert set(trusted) == {genuine.key_id}
