"""`billfold audit checkpoint|verify|prove|public-key` end to end, and the README's
standalone verifier run on a real proof."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from audit.audit_support import MASTER_KEY, as_attacker, execute, opened, raw_uuid
from billfold.audit import service
from billfold.kit.ids import format_id, parse_id
from cli_support import Ran, billfold

README = Path(__file__).parents[2] / "README.md"


def _billfold(
    database_url: str, *arguments: str, cwd: Path | None = None, **environment: str
) -> Ran:
    """`billfold *arguments` on `database_url`; an `environment` value "-" unsets it."""
    settings = {
        "BILLFOLD_DATABASE_URL": database_url,
        "BILLFOLD_MASTER_KEY": MASTER_KEY,
        "COLUMNS": "200",
        **environment,
    }
    return billfold(
        *arguments,
        environment={name: None if value == "-" else value for name, value in settings.items()},
        cwd=cwd,
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


def test_checkpoint_prove_and_verify_from_the_command_line(
    isolated_database_url: str, tmp_path: Path
) -> None:
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
    assert key_id.startswith("sig_")
    published = _billfold(url, "audit", "public-key", "--jwks")
    assert published.returncode == 0, published.stderr
    jwks = json.loads(published.stdout)
    assert [jwk["kid"] for jwk in jwks["keys"]] == [key_id]
    proved = _billfold(url, "audit", "prove", entry_ids[1])
    assert proved.returncode == 0, proved.stderr
    proof = json.loads(proved.stdout)
    assert f"\nkey {key_id}\n" in proof["checkpoint"]["message"]
    verify_proof = _readme_verifier()
    assert verify_proof(proof, jwks) is True  # type: ignore[operator]
    wrong_index = {**proof, "leaf_index": 0}
    assert verify_proof(wrong_index, jwks) is False  # type: ignore[operator]
    other_entry = json.loads(_billfold(url, "audit", "prove", entry_ids[0]).stdout)
    swapped = {**proof, "entry_encoding": other_entry["entry_encoding"]}
    assert verify_proof(swapped, jwks) is False  # type: ignore[operator]
    other_key = {"keys": [{**jwks["keys"][0], "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
    with pytest.raises(InvalidSignature):
        verify_proof(proof, other_key)  # type: ignore[operator]
    with pytest.raises(KeyError):
        verify_proof(proof, {"keys": []})  # type: ignore[operator]

    verified = _billfold(url, "audit", "verify", "--tenant", tenant)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Audit log verified" in verified.stdout
    everything = _billfold(url, "audit", "verify", "--public-key", f"{key_id}:{public_key.hex()}")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(published.stdout)
    by_jwks = _billfold(url, "audit", "verify", "--jwks", str(jwks_file))
    assert by_jwks.returncode == 0, by_jwks.stdout + by_jwks.stderr

    # A rotation: the next checkpoint is signed by the new key, and both keep verifying.
    rotated = _billfold(url, "keys", "rotate-signing", "--purpose", "audit")
    assert rotated.returncode == 0, rotated.stderr
    assert _billfold(url, "tenant", "create", "Audited too").returncode == 0
    # the new tenant's chain and the platform chain (the rotation is a security event)
    assert "Signed 2 checkpoint(s)" in _billfold(url, "audit", "checkpoint").stdout
    new_key_id = _billfold(url, "audit", "public-key").stdout.split()[0]
    assert new_key_id != key_id
    after = _billfold(url, "audit", "verify")
    assert after.returncode == 0, after.stdout + after.stderr
    stale = _billfold(url, "audit", "verify", "--jwks", str(jwks_file))
    assert stale.returncode == 1 and "untrusted key" in stale.stdout, stale.stdout
    jwks_file.write_text(_billfold(url, "audit", "public-key", "--jwks").stdout)
    fresh = _billfold(url, "audit", "verify", "--jwks", str(jwks_file))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

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


def test_verify_refuses_a_malformed_public_key_or_jwks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    refused = _billfold(url, "audit", "verify", "--public-key", "nocolon")
    assert refused.returncode == 2
    assert "KEY_ID:HEX" in refused.stderr
    not_jwks = tmp_path / "jwks.json"
    not_jwks.write_text('{"keys": [{"kty": "RSA", "kid": "x"}]}')
    bad_jwks = _billfold(url, "audit", "verify", "--jwks", str(not_jwks))
    assert bad_jwks.returncode == 2
    assert "not a JWKS of Ed25519 keys" in bad_jwks.stderr


def test_verifying_a_tenant_without_a_chain_fails(tmp_path: Path) -> None:
    """Every tenant's chain opens with its `tenant.created` entry, so a tenant with none is a
    mistyped id or a chain deleted whole: that is not "verified" (it printed so)."""
    url = f"sqlite:///{tmp_path}/cli.db"
    unknown = format_id("ten", uuid.uuid4())
    missing = _billfold(url, "audit", "verify", "--tenant", unknown)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "No audit chain" in missing.stderr
    assert "verified" not in missing.stdout
    both = _billfold(url, "audit", "verify", "--tenant", unknown, "--platform")
    assert both.returncode == 2
    assert "not both" in both.stderr


def test_without_a_keystore_nothing_is_signed_and_no_key_file_is_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    unset = _billfold(url, "audit", "public-key", BILLFOLD_MASTER_KEY="-", cwd=tmp_path)
    assert unset.returncode == 1
    assert "keystore" in unset.stderr.lower()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cli.db"]
