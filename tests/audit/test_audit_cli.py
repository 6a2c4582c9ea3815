"""`billfold audit checkpoint|verify|prove|public-key` end to end, and the README's
standalone verifier run on a real proof."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from audit.audit_support import SEED_HEX, as_attacker, execute, opened, raw_uuid
from billfold.audit import service
from billfold.kit.ids import format_id, parse_id

pytestmark = pytest.mark.slow
README = Path(__file__).parents[2] / "README.md"


def _billfold(
    database_url: str, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BILLFOLD_DATABASE_URL": database_url,
        "BILLFOLD_AUDIT_SIGNING_KEY": SEED_HEX,
        "COLUMNS": "200",
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-m", "billfold.cli", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _readme_verifier() -> object:
    text = README.read_text()
    block = re.search(r"<!-- audit-verifier -->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "the README carries the standalone verifier"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README verifier", "exec"), namespace)  # noqa: S102
    return namespace["verify_proof"]


def _entry_ids(database_url: str, tenant: str) -> list[str]:
    async def read() -> list[str]:
        async with opened(database_url) as unit_of_work, unit_of_work.begin() as session:
            page = await service.list_entries(
                session, tenant_id=parse_id("ten", tenant), cursor=None, limit=50
            )
            return [format_id("aud", entry.id) for entry in page.items]

    return asyncio.run(read())


def test_checkpoint_prove_and_verify_from_the_command_line(isolated_database_url: str) -> None:
    url = isolated_database_url
    created = _billfold(url, "tenant", "create", "Audited")
    assert created.returncode == 0, created.stderr
    match = re.search(r"^tenant +(ten_[0-9a-f]{32})", created.stdout, re.M)
    assert match is not None
    tenant = match.group(1)
    entry_ids = _entry_ids(url, tenant)
    assert len(entry_ids) == 3

    early = _billfold(url, "audit", "prove", entry_ids[1])
    assert early.returncode == 1 and "checkpoint" in early.stderr
    signed = _billfold(url, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    assert "Signed 1 checkpoint(s)" in signed.stdout
    assert "Signed 0" in _billfold(url, "audit", "checkpoint").stdout

    key_line = _billfold(url, "audit", "public-key").stdout.split()
    key_id, public_key = key_line[0], bytes.fromhex(key_line[1])
    proved = _billfold(url, "audit", "prove", entry_ids[1])
    assert proved.returncode == 0, proved.stderr
    proof = json.loads(proved.stdout)
    verify_proof = _readme_verifier()
    assert verify_proof(proof, public_key) is True  # type: ignore[operator]
    wrong_index = {**proof, "leaf_index": 0}
    assert verify_proof(wrong_index, public_key) is False  # type: ignore[operator]
    other_entry = json.loads(_billfold(url, "audit", "prove", entry_ids[0]).stdout)
    swapped = {**proof, "entry_encoding": other_entry["entry_encoding"]}
    assert verify_proof(swapped, public_key) is False  # type: ignore[operator]
    with pytest.raises(InvalidSignature):
        verify_proof(proof, bytes(32))  # type: ignore[operator]

    verified = _billfold(url, "audit", "verify", "--tenant", tenant)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Audit log verified" in verified.stdout
    everything = _billfold(url, "audit", "verify", "--public-key", f"{key_id}:{public_key.hex()}")
    assert everything.returncode == 0, everything.stdout + everything.stderr

    async def tamper() -> None:
        async with as_attacker(url) as session:
            await execute(
                session,
                "UPDATE audit_entries SET actor_id = 'key_innocent' WHERE id = :id",
                id=raw_uuid(session, parse_id("aud", entry_ids[2])),
            )

    asyncio.run(tamper())
    broken = _billfold(url, "audit", "verify")
    assert broken.returncode == 1
    assert "Audit verification failed" in broken.stderr
    row = next(line for line in broken.stdout.splitlines() if parse_id("ten", tenant).hex in line)
    assert re.search(r"\b3\b.*entry_modified", row), broken.stdout


def test_verify_refuses_a_malformed_public_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    refused = _billfold(url, "audit", "verify", "--public-key", "nocolon")
    assert refused.returncode == 2
    assert "KEY_ID:HEX" in refused.stderr
    bad_key = _billfold(url, "audit", "public-key", BILLFOLD_AUDIT_SIGNING_KEY="00")
    assert bad_key.returncode == 1
    assert "64 hex characters" in bad_key.stderr
