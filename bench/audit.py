"""Audit log appends per second on PostgreSQL and SQLite, beside the raw SHA-256 rate.

Phases, each `--seconds` long:

- sha256:  `hashlib.sha256(entry encoding).digest()` in a loop, on a typical entry's
           canonical encoding (the reference: what hashing alone would allow);
- single:  one `audit.service.append` per committed database transaction, one chain (each
           audited act commits on its own, and one tenant's chain is serialized);
- batched: 100 appends per transaction, one chain (a request that audits several facts);

`single` and `batched` run on a throwaway PostgreSQL database (`BILLFOLD_BENCH_DATABASE_URL`,
default the local server) and on a SQLite file (WAL, synchronous=FULL); afterwards every chain
must verify (`verify_entries_per_s` is that speed). A checkpoint over the PostgreSQL chain is
signed and timed as well.

Run:  uv run python bench/audit.py --seconds 5
The last line of the output is one JSON object; `audit_appends_per_s` is PostgreSQL single.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import bench_database_url, console, print_table, temporary_database
from billfold.audit import service
from billfold.audit.audit import AuditService
from billfold.audit.context import Source
from billfold.audit.encoding import EntryFields, encode_entry
from billfold.keys.keyring import Keyring
from billfold.keys.keystore import LocalKeystore
from billfold.keys.signing import HierarchySigningKeys
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id
from billfold.migrations import upgrade

BATCH = 100
SOURCE = Source(ip="203.0.113.7", user_agent="Mozilla/5.0 (bench)")


def _typical_encoding() -> bytes:
    fields = EntryFields(
        id=new_id(),
        chain_id=new_id(),
        sequence=123_456,
        previous_hash=bytes(32),
        occurred_at=time.time_ns(),
        tenant_id=new_id(),
        actor_type="operator",
        actor_id=f"opr_{uuid.uuid4().hex}",
        action="approval.executed",
        target=f"apr_{uuid.uuid4().hex}",
        source_ip=SOURCE.ip,
        user_agent=SOURCE.user_agent,
        before='{"approval_status":"approved"}',
        after='{"approval_status":"executed","transfer_id":"txf_0123"}',
        detail='{"action_type":"ledger_adjustment","amount":"750","asset":"USD"}',
    )
    return encode_entry(fields)


def sha256_rate(seconds: float) -> float:
    data = _typical_encoding()
    digest = hashlib.sha256
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            digest(data).digest()
        count += 1000
    return count / (time.perf_counter() - started)


async def _append(session: object, tenant_id: uuid.UUID, index: int) -> None:
    await service.append(
        session,  # type: ignore[arg-type]
        tenant_id=tenant_id,
        action="approval.executed",
        occurred_at=time.time_ns(),
        actor_type="operator",
        actor_id=f"opr_{index:032x}",
        target=f"apr_{index:032x}",
        before={"approval_status": "approved"},
        after={"approval_status": "executed", "transfer_id": f"txf_{index:032x}"},
        detail={"action_type": "ledger_adjustment", "amount": "750", "asset": "USD"},
        source=SOURCE,
    )


async def append_rate(unit_of_work: UnitOfWork, *, per_transaction: int, seconds: float) -> float:
    tenant_id = new_id()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        async with unit_of_work.begin() as session:
            for _ in range(per_transaction):
                await _append(session, tenant_id, count)
                count += 1
    return count / (time.perf_counter() - started)


async def appends_per_s(url: str, *, seconds: float, per_transaction: int = 1) -> float:
    """The append rate alone on the (migrated here) database at `url`: what
    `bench/crypto.py` reports as `audit_appends_per_s`."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(parse_database_url(url), pool_size=2)
    try:
        return await append_rate(
            UnitOfWork(engine), per_transaction=per_transaction, seconds=seconds
        )
    finally:
        await engine.dispose()


async def run_backend(url: str, seconds: float) -> dict[str, float]:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(parse_database_url(url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    root_key = os.urandom(32)  # checkpoints signed by the hierarchy's "audit" key, as served
    keyring = Keyring(lambda: LocalKeystore(root_key))
    audit = AuditService(
        unit_of_work,
        signing_keys=HierarchySigningKeys(keyring, purpose="audit"),
        checkpoint_entries_max=1_000_000,
    )
    try:
        single = await append_rate(unit_of_work, per_transaction=1, seconds=seconds)
        batched = await append_rate(unit_of_work, per_transaction=BATCH, seconds=seconds)
        started = time.perf_counter()
        signed = await audit.checkpoint_due()
        checkpoint_s = time.perf_counter() - started
        started = time.perf_counter()
        reports = await audit.verify()
        verify_s = time.perf_counter() - started
    finally:
        keyring.close()
        await engine.dispose()
    broken = [report for report in reports if not report.ok]
    if broken or signed != 2:
        raise SystemExit(f"audit misbehaved: {broken} ({signed} checkpoints)")
    entries = sum(report.entries_checked for report in reports)
    return {
        "single": single,
        "batched": batched,
        "verify": entries / verify_s,
        "checkpoint": entries / checkpoint_s,
    }


async def main(seconds: float) -> dict[str, object]:
    console.print(f"Measuring SHA-256 for {seconds} s…")
    sha256 = sha256_rate(seconds)
    console.print("PostgreSQL…")
    async with temporary_database(bench_database_url(), "billfold_bench_audit") as url:
        postgresql = await run_backend(url, seconds)
    console.print("SQLite…")
    with tempfile.TemporaryDirectory() as directory:
        sqlite = await run_backend(f"sqlite:///{Path(directory) / 'audit.db'}", seconds)
    rows = [
        ["sha256 of one entry", f"{sha256:,.0f}", "", "1.0"],
        *[
            [
                f"{label} {phase}",
                f"{figures[phase]:,.0f}",
                backend,
                f"{figures[phase] / sha256:.4f}",
            ]
            for label, backend, figures in (
                ("postgresql", "PostgreSQL", postgresql),
                ("sqlite", "SQLite", sqlite),
            )
            for phase in ("single", "batched", "checkpoint", "verify")
        ],
    ]
    print_table("audit log, per second", ["phase", "per second", "backend", "vs sha256"], rows)
    return {
        "bench": "audit",
        "audit_appends_per_s": round(postgresql["single"]),
        "audit_appends_per_s_sqlite": round(sqlite["single"]),
        "audit_batched_appends_per_s": round(postgresql["batched"]),
        "audit_batched_appends_per_s_sqlite": round(sqlite["batched"]),
        "audit_checkpoint_entries_per_s": round(postgresql["checkpoint"]),
        "audit_verify_entries_per_s": round(postgresql["verify"]),
        "sha256_per_s": round(sha256),
        "audit_appends_vs_sha256": round(postgresql["single"] / sha256, 5),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    arguments = parser.parse_args()
    if not 0 < arguments.seconds <= 600:
        parser.error("--seconds is between 0 and 600")
    result = asyncio.run(main(arguments.seconds))
    sys.stdout.flush()
    print(json.dumps(result))
