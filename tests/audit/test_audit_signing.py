"""The local checkpoint signer: from the setting, from a generated key file, or refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from audit.audit_support import SEED_HEX
from billfold.audit.errors import AuditSigningKeyInvalid
from billfold.audit.signing import LocalEd25519Signer, load_local_signer, verify_signature

# RFC 8032 section 7.1, test 1: this seed's public key and its signature of the empty message.
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_the_seed_setting_signs_as_rfc_8032_says(tmp_path: Path) -> None:
    signer = load_local_signer(key=SecretStr(SEED_HEX), key_path=str(tmp_path / "unused.key"))
    assert signer.public_key_raw().hex() == RFC8032_PUBLIC
    assert signer.sign(b"").hex() == RFC8032_SIGNATURE
    assert signer.key_id.startswith("audit-ed25519-") and len(signer.key_id) == 30
    assert not (tmp_path / "unused.key").exists()


def test_without_a_setting_a_key_file_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    first = load_local_signer(key=None, key_path=str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_local_signer(key=None, key_path=str(path))
    assert again.public_key_raw() == first.public_key_raw()
    signature = again.sign(b"checkpoint")
    assert verify_signature(
        public_key=first.public_key_raw(), signature=signature, message=b"checkpoint"
    )
    assert not verify_signature(
        public_key=first.public_key_raw(), signature=signature, message=b"checkpoinT"
    )


@pytest.mark.parametrize("seed", ["", "zz" * 32, "00" * 31, "00" * 33])
def test_a_malformed_seed_is_refused(seed: str, tmp_path: Path) -> None:
    with pytest.raises(AuditSigningKeyInvalid):
        load_local_signer(key=SecretStr(seed), key_path=str(tmp_path / "k"))


def test_a_key_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    path.write_text("not a key")
    with pytest.raises(AuditSigningKeyInvalid):
        load_local_signer(key=None, key_path=str(path))


def test_signatures_of_the_wrong_shape_do_not_verify() -> None:
    signer = LocalEd25519Signer.generate()
    public = signer.public_key_raw()
    assert not verify_signature(public_key=public, signature=b"short", message=b"")
    assert not verify_signature(public_key=public[:31], signature=bytes(64), message=b"")
    assert not verify_signature(public_key=public, signature=bytes(64), message=b"")
