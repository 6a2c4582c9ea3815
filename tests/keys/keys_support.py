"""Helpers for key tests: a unit of work per test, keyrings on the local and HSM keystores."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from billfold.keys.keyring import Keyring
from billfold.keys.keystore import LocalKeystore

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SECOND_NS = 1_000_000_000
START_NS = 1_800_000_000 * SECOND_NS


def local_keyring(root_key: bytes | None = None, **options: float) -> Keyring:
    key = root_key or os.urandom(32)
    return Keyring(lambda: LocalKeystore(key), **options)  # type: ignore[arg-type]


def new_tenant_id() -> uuid.UUID:
    """Keys need no tenant row: a fresh id keeps tests apart on the shared database."""
    return uuid.uuid4()


@dataclass(frozen=True)
class SoftHsmToken:
    config_path: Path
    label: str
    pin: str
    module_path: str = SOFTHSM_MODULE


def init_softhsm_token(directory: Path, *, label: str = "billfold-test") -> SoftHsmToken:
    """A fresh SoftHSM2 token in `directory`, with SOFTHSM2_CONF set for this process.
    `.ci/run` installs softhsm2; without it (a laptop) the HSM tests are skipped."""
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("softhsm2 is required under CI=true")
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2)")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(config)
    pin = "1234"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(config)},
    )
    return SoftHsmToken(config_path=config, label=label, pin=pin)
