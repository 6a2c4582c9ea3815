"""Field encryption through the key hierarchy: the local keystore and SoftHSM2, beside the
raw AES-256-GCM rate of the `cryptography` package measured in the same run.

    uv run python bench/crypto.py --seconds 5

Each phase runs for `--seconds`. A field is a 24-byte value (an email address) with its
associated data (tenant, table, column, row id), as the PII vault encrypts it:

- raw AES-GCM: `AESGCM.encrypt` with a random nonce and a prebuilt associated data;
- local / hsm encrypt, decrypt: `Keyring.encrypt` / `decrypt` in steady state (the owner's
  data key unwrapped and cached), on a SQLite database in a temporary directory;
- local / hsm unwrap: the keystore's unwrap of a key-encryption key, the cold path (cache
  misses) — inside the HSM for SoftHSM2;
- audit append: one `audit.service.append` per committed transaction on one chain, on a
  throwaway PostgreSQL database (`BILLFOLD_BENCH_DATABASE_URL`, default the local server;
  the run's SQLite file when none answers), measured by `bench/audit.py`'s code — the
  same figure as its headline `audit_appends_per_s`.

Phases are a list of `Phase` objects. The last line is one JSON object with every figure
(`local_encrypt_per_s`, `hsm_encrypt_per_s`, `audit_appends_per_s`, `raw_aesgcm_per_s`, …),
`audit_appends_backend`, and `local_ratio` = local encryptions per second / raw AES-GCM
encryptions per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).parent))
import audit as audit_bench
from _common import bench_database_url, print_table, temporary_database
from billfold.keys.envelope import FieldContext, field_aad
from billfold.keys.keyring import Keyring
from billfold.keys.keystore import Keystore, LocalKeystore
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.migrations import upgrade

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
VALUE = b"zhang.wei@example.com.cn"
CHUNK = 200
"""Operations between two looks at the clock."""


@dataclass
class Context:
    """What the phases share: the run's directory, database and keystores."""

    seconds: float
    directory: Path
    database_url: str
    hsm: Keystore | None
    figures: dict[str, float | None]
    backend: str | None = None
    """Where the audit appends were measured."""


@dataclass(frozen=True)
class Phase:
    name: str
    key: str
    run: Callable[[Context], Awaitable[float | None]]
    """Operations per second, or None when the phase cannot run here."""


async def _timed(seconds: float, chunk: Callable[[], Awaitable[None]]) -> float:
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        await chunk()
        done += CHUNK
    return done / elapsed


async def raw_aesgcm(context: Context) -> float:
    cipher = AESGCM(os.urandom(32))
    aad = field_aad(_field(), uuid.uuid4())

    async def chunk() -> None:
        for _ in range(CHUNK):
            nonce = os.urandom(12)
            cipher.encrypt(nonce, VALUE, aad)

    return await _timed(context.seconds, chunk)


def _field() -> FieldContext:
    return FieldContext(uuid.uuid4(), "pii", "privacy_pii_values", "email", uuid.uuid4().hex)


async def _keyring_rate(context: Context, keystore: Keystore, *, decrypt: bool) -> float:
    keyring = Keyring(lambda: keystore)
    engine = create_engine(parse_database_url(context.database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            field = _field()
            ciphertext = await keyring.encrypt(
                session, VALUE, context=field, owner="usr_bench", now_ns=time.time_ns()
            )
        async with UnitOfWork(engine).begin() as session:
            # Warm the caches outside the timing: the steady state is what is measured.
            await keyring.encrypt(
                session, VALUE, context=field, owner="usr_bench", now_ns=time.time_ns()
            )
            await keyring.decrypt(session, ciphertext, context=field)

            async def chunk() -> None:
                for _ in range(CHUNK):
                    if decrypt:
                        await keyring.decrypt(session, ciphertext, context=field)
                    else:
                        await keyring.encrypt(
                            session, VALUE, context=field, owner="usr_bench", now_ns=0
                        )

            return await _timed(context.seconds, chunk)
    finally:
        await engine.dispose()


async def _unwrap_rate(context: Context, keystore: Keystore) -> float:
    wrapped = keystore.wrap(os.urandom(32), aad=b"bench")

    async def chunk() -> None:
        for _ in range(CHUNK):
            keystore.unwrap(wrapped, aad=b"bench")

    return await _timed(context.seconds, chunk)


_LOCAL = LocalKeystore(os.urandom(32))


async def local_encrypt(context: Context) -> float:
    return await _keyring_rate(context, _LOCAL, decrypt=False)


async def local_decrypt(context: Context) -> float:
    return await _keyring_rate(context, _LOCAL, decrypt=True)


async def local_unwrap(context: Context) -> float:
    return await _unwrap_rate(context, _LOCAL)


async def hsm_encrypt(context: Context) -> float | None:
    return None if context.hsm is None else await _keyring_rate(context, context.hsm, decrypt=False)


async def hsm_decrypt(context: Context) -> float | None:
    return None if context.hsm is None else await _keyring_rate(context, context.hsm, decrypt=True)


async def hsm_unwrap(context: Context) -> float | None:
    return None if context.hsm is None else await _unwrap_rate(context, context.hsm)


async def audit_appends(context: Context) -> float:
    """Audit appends per second, one per committed transaction: PostgreSQL when it answers
    (as `bench/audit.py` measures it), else the run's SQLite file."""
    try:
        async with temporary_database(bench_database_url(), "billfold_bench_crypto") as url:
            context.backend = "postgresql"
            return await audit_bench.appends_per_s(url, seconds=context.seconds)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"PostgreSQL unavailable ({error}); audit appends measured on SQLite")
    context.backend = "sqlite"
    return await audit_bench.appends_per_s(context.database_url, seconds=context.seconds)


PHASES: list[Phase] = [
    Phase("raw AES-256-GCM (cryptography)", "raw_aesgcm_per_s", raw_aesgcm),
    Phase("local keystore: encrypt field", "local_encrypt_per_s", local_encrypt),
    Phase("local keystore: decrypt field", "local_decrypt_per_s", local_decrypt),
    Phase("local keystore: unwrap KEK (cold)", "local_unwrap_per_s", local_unwrap),
    Phase("SoftHSM2: encrypt field", "hsm_encrypt_per_s", hsm_encrypt),
    Phase("SoftHSM2: decrypt field", "hsm_decrypt_per_s", hsm_decrypt),
    Phase("SoftHSM2: unwrap KEK in the HSM (cold)", "hsm_unwrap_per_s", hsm_unwrap),
    Phase("audit log: append, one per transaction", "audit_appends_per_s", audit_appends),
]


def open_softhsm(directory: Path) -> Keystore | None:
    """A token in `directory` (SOFTHSM2_CONF points there), or None without softhsm2."""
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).exists():
        return None
    from billfold.keys.pkcs11 import Pkcs11Keystore

    tokens = directory / "tokens"
    tokens.mkdir()
    config = directory / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(config)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234",
         "--so-pin", "5678"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Pkcs11Keystore(
        module_path=SOFTHSM_MODULE,
        token_label="bench",  # noqa: S106 (a label)
        pin="1234",
        key_label="root",
    )


async def run(
    seconds: float, phases: Sequence[Phase]
) -> tuple[dict[str, float | None], str | None]:
    with tempfile.TemporaryDirectory(prefix="billfold-bench-crypto-") as name:
        directory = Path(name)
        database_url = f"sqlite:///{directory / 'bench.db'}"
        await asyncio.to_thread(upgrade, database_url)
        context = Context(seconds, directory, database_url, open_softhsm(directory), {})
        try:
            for phase in phases:
                context.figures[phase.key] = await phase.run(context)
        finally:
            if context.hsm is not None:
                context.hsm.close()
        return context.figures, context.backend


def summary(figures: dict[str, float | None], backend: str | None = None) -> dict[str, object]:
    local, raw = figures.get("local_encrypt_per_s"), figures.get("raw_aesgcm_per_s")
    result: dict[str, object] = {"bench": "crypto"}
    result.update({key: None if value is None else round(value) for key, value in figures.items()})
    if backend is not None:
        result["audit_appends_backend"] = backend
    result["local_ratio"] = None if not local or not raw else round(local / raw, 3)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="Duration of each phase.")
    arguments = parser.parse_args(argv)
    if not 0 < arguments.seconds <= 600:
        parser.error("--seconds is between 0 and 600")
    figures, backend = asyncio.run(run(arguments.seconds, PHASES))
    rows = [
        [phase.name, "n/a" if figures[phase.key] is None else f"{figures[phase.key]:,.0f}"]
        for phase in PHASES
    ]
    print_table("Field encryption (operations per second)", ["phase", "ops/s"], rows)
    print(json.dumps(summary(figures, backend)))


if __name__ == "__main__":
    main()
