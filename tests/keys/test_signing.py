"""Ed25519 signing keys in the hierarchy: a Signer per (tenant, purpose), rotation keeping
old keys published, JWKS documents whose keys verify the signatures (both backends)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from billfold.keys import signing
from billfold.keys.errors import InvalidPurpose, KeyVersionActive, KeyVersionNotFound
from billfold.keys.keyring import PLATFORM_TENANT_ID, Keyring
from billfold.keys.service import KeyActor
from billfold.kit.db import UnitOfWork
from billfold.kit.signing import Signer
from keys.keys_support import START_NS, local_keyring, new_tenant_id

pytestmark = pytest.mark.anyio


async def _signer(unit_of_work: UnitOfWork, keyring: Keyring, tenant_id: object) -> Signer:
    async with unit_of_work.begin() as session:
        return await signing.active_signer(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose="audit",
            now_ns=START_NS,  # type: ignore[arg-type]
        )


async def test_rotation_keeps_old_signatures_verifiable(unit_of_work: UnitOfWork) -> None:
    tenant_id, keyring = new_tenant_id(), local_keyring()
    first = await _signer(unit_of_work, keyring, tenant_id)
    assert first.key_id.startswith("sig_") and len(first.public_key_raw()) == 32
    old_signature = first.sign(b"checkpoint 1")
    assert len(old_signature) == 64
    same = await _signer(unit_of_work, Keyring(keyring._open_keystore), tenant_id)
    assert same.key_id == first.key_id and same.public_key_raw() == first.public_key_raw()
    async with unit_of_work.begin() as session:
        rotated = await signing.rotate_signing_key(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose="audit",
            actor=KeyActor(),
            now_ns=START_NS,
        )
    second = await _signer(unit_of_work, keyring, tenant_id)
    assert second.key_id != first.key_id and rotated.version == 2
    async with unit_of_work.begin() as session:
        document = signing.jwks_of(
            await signing.published_signing_keys(session, tenant_id=tenant_id)
        )
    by_kid = {key["kid"]: key for key in document["keys"]}
    assert set(by_kid) == {first.key_id, second.key_id}
    assert by_kid[first.key_id] | {"x": ""} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "",
        "kid": first.key_id,
        "use": "sig",
        "alg": "EdDSA",
    }
    assert signing.verify_with_jwk(by_kid[first.key_id], b"checkpoint 1", old_signature)
    assert not signing.verify_with_jwk(by_kid[second.key_id], b"checkpoint 1", old_signature)
    assert not signing.verify_with_jwk(by_kid[first.key_id], b"checkpoint 2", old_signature)
    new_signature = second.sign(b"checkpoint 2")
    Ed25519PublicKey.from_public_bytes(second.public_key_raw()).verify(
        new_signature, b"checkpoint 2"
    )
    async with unit_of_work.begin() as session:
        with pytest.raises(KeyVersionActive):
            await signing.retire_signing_key(
                session,
                tenant_id=tenant_id,
                key_id=second.key_id,
                actor=KeyActor(),
                now_ns=START_NS,
            )
        await signing.retire_signing_key(
            session, tenant_id=tenant_id, key_id=first.key_id, actor=KeyActor(), now_ns=START_NS
        )
        published = await signing.published_signing_keys(session, tenant_id=tenant_id)
        assert [signing.jwk_of(row)["kid"] for row in published] == [second.key_id]
        with pytest.raises(KeyVersionNotFound):
            await signing.retire_signing_key(
                session,
                tenant_id=new_tenant_id(),
                key_id=second.key_id,
                actor=KeyActor(),
                now_ns=START_NS,
            )


async def test_platform_keys_are_apart_from_tenant_keys(unit_of_work: UnitOfWork) -> None:
    keyring = local_keyring()
    tenant = await _signer(unit_of_work, keyring, new_tenant_id())
    async with unit_of_work.begin() as session:
        platform = await signing.active_signer(session, keyring=keyring, now_ns=START_NS)
        published = await signing.published_signing_keys(session, tenant_id=PLATFORM_TENANT_ID)
        with pytest.raises(InvalidPurpose):
            await signing.active_signer(session, keyring=keyring, purpose="Bad!", now_ns=START_NS)
    assert platform.key_id != tenant.key_id
    assert platform.key_id in {signing.jwk_of(row)["kid"] for row in published}
    assert tenant.key_id not in {signing.jwk_of(row)["kid"] for row in published}


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "RSA", "crv": "Ed25519", "x": "A" * 43}, "not an Ed25519"),
        ({"kty": "OKP", "crv": "X25519", "x": "A" * 43}, "not an Ed25519"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "short"}, "32 bytes"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "!" * 43}, "base64url|32 bytes"),
        ({"kty": "OKP", "crv": "Ed25519"}, "32 bytes"),
    ],
)
def test_a_malformed_jwk_never_verifies(jwk: dict[str, object], reason: str) -> None:
    assert not signing.verify_with_jwk(jwk, b"m", b"\x00" * 64)
    with pytest.raises(ValueError, match=reason):
        signing.public_key_from_jwk(jwk)


def test_the_x_member_is_unpadded_base64url() -> None:
    raw = bytes(range(32))
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    key = signing.public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x})
    assert key.public_bytes_raw() == raw
