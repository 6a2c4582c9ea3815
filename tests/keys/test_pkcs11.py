"""The key hierarchy on a SoftHSM2 token end to end: the root key is generated inside the
HSM, cannot be read out, and wraps every key-encryption key (on both database backends)."""

from __future__ import annotations

import uuid

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType
from pkcs11.exceptions import AttributeSensitive

from billfold.keys import service
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import DecryptionFailed, KeystoreUnavailable
from billfold.keys.keyring import Keyring
from billfold.keys.pkcs11 import Pkcs11Keystore
from billfold.kit.db import UnitOfWork
from keys.keys_support import START_NS, SoftHsmToken, new_tenant_id

pytestmark = pytest.mark.anyio


def _keystore(token: SoftHsmToken, key_label: str) -> Pkcs11Keystore:
    return Pkcs11Keystore(
        module_path=token.module_path, token_label=token.label, pin=token.pin, key_label=key_label
    )


def test_the_root_key_is_generated_inside_and_never_leaves(softhsm_token: SoftHsmToken) -> None:
    label = f"root-{uuid.uuid4().hex[:8]}"
    keystore = _keystore(softhsm_token, label)
    try:
        root = keystore.root_key
        assert root[Attribute.EXTRACTABLE] is False
        assert root[Attribute.SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            root[Attribute.VALUE]
        wrapped = keystore.wrap(b"k" * 32, aad=b"context")
        assert keystore.unwrap(wrapped, aad=b"context") == b"k" * 32
        with pytest.raises(DecryptionFailed):
            keystore.unwrap(wrapped, aad=b"another context")
        assert keystore.key_id == f"pkcs11:{softhsm_token.label}/{label}"
    finally:
        keystore.close()
    # Opening again finds the same key on the token instead of making a new one.
    again = _keystore(softhsm_token, label)
    try:
        assert again.unwrap(wrapped, aad=b"context") == b"k" * 32
    finally:
        again.close()


def test_a_derived_key_is_made_inside_the_hsm_and_the_same_each_session(
    softhsm_token: SoftHsmToken,
) -> None:
    label = f"root-{uuid.uuid4().hex[:8]}"
    keystore = _keystore(softhsm_token, label)
    try:
        derived = keystore.derive_key(b"idempotency-fingerprint")
        assert len(derived) == 32
        assert keystore.derive_key(b"another label") != derived
    finally:
        keystore.close()
    for key_label, same in ((label, True), (f"other-{uuid.uuid4().hex[:8]}", False)):
        opened = _keystore(softhsm_token, key_label)  # one session at a time, as the app
        try:
            assert (opened.derive_key(b"idempotency-fingerprint") == derived) is same
        finally:
            opened.close()


def test_a_wrong_pin_or_token_is_keystore_unavailable(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(KeystoreUnavailable):
        Pkcs11Keystore(
            module_path=softhsm_token.module_path,
            token_label=softhsm_token.label,
            pin="0000",
            key_label="root",
        )
    with pytest.raises(KeystoreUnavailable):
        Pkcs11Keystore(
            module_path=softhsm_token.module_path,
            token_label="no-such-token",
            pin=softhsm_token.pin,
            key_label="root",
        )


async def test_envelope_encryption_and_rotation_on_the_hsm(
    softhsm_token: SoftHsmToken, unit_of_work: UnitOfWork
) -> None:
    label = f"root-{uuid.uuid4().hex[:8]}"
    keyring = Keyring(lambda: _keystore(softhsm_token, label))
    tenant_id = new_tenant_id()
    written = []
    try:
        for version in (1, 2, 3):
            async with unit_of_work.begin() as session:
                if version > 1:
                    await service.rotate(
                        session,
                        keyring=keyring,
                        tenant_id=tenant_id,
                        purpose="pii",
                        actor=service.KeyActor(),
                        now_ns=START_NS,
                    )
                context = FieldContext(
                    tenant_id=tenant_id, purpose="pii", table="t", column="c", row_id=str(version)
                )
                ciphertext = await keyring.encrypt(
                    session, b"v%d" % version, context=context, owner="usr_x", now_ns=START_NS
                )
                written.append((context, ciphertext))
        async with unit_of_work.begin() as session:
            step = await service.rewrap_batch(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                batch_size=10,
                now_ns=START_NS,
            )
            assert step.rewrapped == 2 and step.remaining == 0
    finally:
        keyring.close()
    fresh = Keyring(lambda: _keystore(softhsm_token, label))
    try:
        async with unit_of_work.begin() as session:
            for version, (context, ciphertext) in enumerate(written, start=1):
                assert await fresh.decrypt(session, ciphertext, context=context) == b"v%d" % version
            status = await service.key_status(session, tenant_id=tenant_id, purpose="pii")
            assert {v.version: v.data_keys for v in status.versions} == {3: 3, 2: 0, 1: 0}
            assert all(v.status != "retired" for v in status.versions)
    finally:
        fresh.close()


def test_a_lost_hsm_session_is_keystore_unavailable(softhsm_token: SoftHsmToken) -> None:
    """An HSM that restarted (or a token removed) leaves a session handle it no longer
    knows: wrapping and unwrapping answer 503 keystore_unavailable, not a crash (500) and
    not a claim that the data is bad."""
    keystore = _keystore(softhsm_token, f"root-{uuid.uuid4().hex[:8]}")
    wrapped = keystore.wrap(b"k" * 32, aad=b"context")
    keystore.close()  # the session handle is now invalid, as after an HSM restart
    with pytest.raises(KeystoreUnavailable):
        keystore.wrap(b"k" * 32, aad=b"context")
    with pytest.raises(KeystoreUnavailable):
        keystore.unwrap(wrapped, aad=b"context")
    keystore.close()  # closing a lost session again is harmless (application shutdown)


def test_two_root_keys_of_the_same_label_are_keystore_unavailable(
    softhsm_token: SoftHsmToken,
) -> None:
    """PKCS#11 labels are not unique (two processes starting on a fresh token may each
    generate one): an ambiguous root key is a clear 503, never a crash or a guess."""
    label = f"root-{uuid.uuid4().hex[:8]}"
    token = pkcs11.lib(softhsm_token.module_path).get_token(token_label=softhsm_token.label)
    with token.open(rw=True, user_pin=softhsm_token.pin) as session:
        for _ in range(2):
            session.generate_key(KeyType.AES, 256, label=label, store=True)
    with pytest.raises(KeystoreUnavailable, match="ambiguous"):
        _keystore(softhsm_token, label)
    # The failed open left no session logged in: the next keystore opens normally.
    keystore = _keystore(softhsm_token, f"root-{uuid.uuid4().hex[:8]}")
    keystore.close()


@pytest.mark.parametrize(
    ("bits", "template"),
    [
        (256, {Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False}),
        (256, {Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True}),
        (128, {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True}),
    ],
)
def test_a_key_of_the_label_that_could_leave_the_hsm_is_not_the_root_key(
    softhsm_token: SoftHsmToken, bits: int, template: dict[Attribute, bool]
) -> None:
    """A key made by hand under the root key's label is used only if it is what Billfold
    would have generated: AES-256, always sensitive, never extractable."""
    label = f"root-{uuid.uuid4().hex[:8]}"
    token = pkcs11.lib(softhsm_token.module_path).get_token(token_label=softhsm_token.label)
    with token.open(rw=True, user_pin=softhsm_token.pin) as session:
        session.generate_key(KeyType.AES, bits, label=label, store=True, template=template)
    with pytest.raises(KeystoreUnavailable, match="cannot be the root key"):
        _keystore(softhsm_token, label)
