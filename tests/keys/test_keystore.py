"""The local keystore: master key parsing, the keystore file with and without a passphrase,
and the settings that choose between them."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from billfold.keys.config import keystore_from_settings
from billfold.keys.errors import KeystoreUnavailable
from billfold.keys.keystore import (
    Argon2idCost,
    LocalKeystore,
    decode_master_key,
    derivation_input,
    derived_key,
    load_or_create_keystore_file,
)
from billfold.kit.settings import Settings

FAST = Argon2idCost(time_cost=1, memory_cost_kib=1024, parallelism=1)


@given(st.binary(min_size=32, max_size=32))
def test_a_master_key_decodes_from_standard_or_url_safe_base64(raw: bytes) -> None:
    assert decode_master_key(base64.b64encode(raw).decode()) == raw
    assert decode_master_key(base64.urlsafe_b64encode(raw).decode()) == raw


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_master_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="master key"):
        decode_master_key(text)
    with pytest.raises(ValueError, match="master_key"):
        Settings(master_key=text)  # type: ignore[arg-type]


def test_a_passphrase_file_never_holds_the_root_key_in_the_clear(tmp_path: Path) -> None:
    path = tmp_path / "billfold.keystore"
    created = load_or_create_keystore_file(
        path, passphrase="long passphrase", allow_unprotected=False, cost=FAST
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["protection"] == "argon2id" and "root_key" not in document
    reopened = load_or_create_keystore_file(
        path, passphrase="long passphrase", allow_unprotected=False, cost=FAST
    )
    assert reopened.key_id == created.key_id
    wrapped = created.wrap(b"x" * 32, aad=b"a")
    assert reopened.unwrap(wrapped, aad=b"a") == b"x" * 32
    with pytest.raises(KeystoreUnavailable, match="passphrase"):
        load_or_create_keystore_file(path, passphrase="wrong", allow_unprotected=False, cost=FAST)
    with pytest.raises(KeystoreUnavailable, match="PASSPHRASE"):
        load_or_create_keystore_file(path, passphrase=None, allow_unprotected=True, cost=FAST)


def test_an_unprotected_file_is_only_for_the_embedded_default(tmp_path: Path) -> None:
    path = tmp_path / "dev.keystore"
    with pytest.raises(KeystoreUnavailable):
        load_or_create_keystore_file(path, passphrase=None, allow_unprotected=False)
    assert not path.exists()
    load_or_create_keystore_file(path, passphrase=None, allow_unprotected=True)
    assert json.loads(path.read_text())["protection"] == "none"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content", ["", "{}", '{"format": "billfold-keystore-v1", "protection": "none"}', "[1]"]
)
def test_a_malformed_keystore_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.keystore"
    path.write_text(content)
    with pytest.raises(KeystoreUnavailable):
        load_or_create_keystore_file(path, passphrase=None, allow_unprotected=True)


def test_settings_choose_the_keystore(tmp_path: Path) -> None:
    raw = os.urandom(32)
    chosen = keystore_from_settings(
        Settings(database_url="postgresql://x@/y", master_key=base64.b64encode(raw).decode())  # type: ignore[arg-type]
    )
    assert isinstance(chosen, LocalKeystore) and chosen.key_id == LocalKeystore(raw).key_id
    with pytest.raises(KeystoreUnavailable, match="PostgreSQL"):
        keystore_from_settings(Settings(database_url="postgresql://x@/y"))
    database = tmp_path / "b.db"
    with pytest.raises(KeystoreUnavailable, match="BILLFOLD_MASTER_KEY"):
        keystore_from_settings(Settings(database_url=f"sqlite:///{database}"))
    assert not (tmp_path / "b.db.keystore").exists()  # never written in the clear
    protected = Settings(database_url=f"sqlite:///{database}", keystore_passphrase="long phrase")  # type: ignore[arg-type]
    keystore_from_settings(protected)
    assert json.loads((tmp_path / "b.db.keystore").read_text())["protection"] != "none"
    development = Settings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}", keystore_allow_unprotected=True
    )
    keystore_from_settings(development)
    assert (tmp_path / "c.db.keystore").exists()
    with pytest.raises(KeystoreUnavailable, match="PIN"):
        keystore_from_settings(Settings(keystore="pkcs11"))


def test_a_derived_key_is_the_root_keys_alone_and_the_same_each_time() -> None:
    """What `derive_key` promises, and that it is AES-256-GCM of the fixed input, so an
    HSM computing it with C_Encrypt gets the same bytes as a root key held in memory."""
    root = os.urandom(32)
    keystore = LocalKeystore(root)
    derived = keystore.derive_key(b"idempotency-fingerprint")
    assert len(derived) == 32
    assert LocalKeystore(root).derive_key(b"idempotency-fingerprint") == derived
    assert keystore.derive_key(b"another label") != derived
    assert LocalKeystore(os.urandom(32)).derive_key(b"idempotency-fingerprint") != derived
    nonce, plaintext, aad = derivation_input(b"idempotency-fingerprint")
    sealed = AESGCM(root).encrypt(nonce, plaintext, aad)
    assert derived_key(b"idempotency-fingerprint", sealed) == derived
