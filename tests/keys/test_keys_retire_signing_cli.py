"""`billfold keys retire-signing`: unpublishes a verify-only signing key and erases its
private key, recorded as a `signing_key.retired` security event; the active key is refused,
and so is another tenant's key or a malformed id. There was no command for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from sqlalchemy import text

from audit.audit_support import MASTER_KEY, opened
from audit.test_audit_cli import _billfold
from cli_support import Ran, billfold


def _answering(url: str, answer: str, *arguments: str) -> Ran:
    """`billfold *arguments`, answering its confirmation prompt with `answer`."""
    environment = {"BILLFOLD_DATABASE_URL": url, "BILLFOLD_MASTER_KEY": MASTER_KEY}
    return billfold(*arguments, environment=environment, stdin=answer)


def _signing_rows(url: str) -> dict[str, tuple[str, bool]]:
    """kid hex → (status, whether a private key is still stored)."""

    async def read() -> dict[str, tuple[str, bool]]:
        async with opened(url) as unit_of_work, unit_of_work.begin() as session:
            rows = await session.execute(
                text("SELECT id, status, encrypted_private_key FROM keys_signing_keys")
            )
            return {
                (row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))).hex: (
                    row[1],
                    row[2] is not None,
                )
                for row in rows
            }

    return asyncio.run(read())


def _platform_events(url: str) -> list[str]:
    async def read() -> list[str]:
        async with opened(url) as unit_of_work, unit_of_work.begin() as session:
            rows = await session.execute(
                text(
                    "SELECT event_type, subject_id FROM identity_security_events"
                    " WHERE tenant_id IS NULL"
                )
            )
            return [f"{row[0]} {row[1]}" for row in rows]

    return asyncio.run(read())


def test_a_verify_only_signing_key_is_retired_from_the_command_line(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url = isolated_database_url
    assert _billfold(url, "tenant", "create", "Signed").returncode == 0
    assert _billfold(url, "audit", "checkpoint").returncode == 0
    old_kid = _billfold(url, "audit", "public-key").stdout.split()[0]
    assert _billfold(url, "keys", "rotate-signing").returncode == 0
    new_kid = _billfold(url, "audit", "public-key").stdout.split()[0]
    assert new_kid != old_kid

    active = _billfold(url, "keys", "retire-signing", "--key", new_kid, "--yes")
    assert active.returncode == 1 and "(key_version_active)" in active.stderr, active.stderr
    malformed = _billfold(url, "keys", "retire-signing", "--key", "sig_nope", "--yes")
    assert malformed.returncode == 1 and "(invalid_id)" in malformed.stderr, malformed.stderr
    other_tenant = f"ten_{uuid.uuid4().hex}"
    elsewhere = _billfold(
        url, "keys", "retire-signing", "--key", old_kid, "--tenant", other_tenant, "--yes"
    )
    assert elsewhere.returncode == 1 and "(key_version_not_found)" in elsewhere.stderr
    declined = _answering(url, "n\n", "keys", "retire-signing", "--key", old_kid)
    assert declined.returncode == 1
    assert _signing_rows(url)[old_kid[4:]] == ("verify_only", True)

    retired = _answering(url, "y\n", "keys", "retire-signing", "--key", old_kid)
    assert retired.returncode == 0, retired.stderr
    assert f"retired   {old_kid} (audit v1)" in retired.stdout
    assert _signing_rows(url)[old_kid[4:]] == ("retired", False)
    assert _signing_rows(url)[new_kid[4:]] == ("active", True)
    jwks = json.loads(_billfold(url, "audit", "public-key", "--jwks").stdout)
    assert [jwk["kid"] for jwk in jwks["keys"]] == [new_kid]
    assert f"signing_key.retired {old_kid}" in _platform_events(url)
    # As documented: what the retired key signed no longer verifies against the published keys.
    verified = _billfold(url, "audit", "verify")
    assert verified.returncode == 1 and "untrusted key" in verified.stdout, verified.stdout
    again = _billfold(url, "keys", "retire-signing", "--key", old_kid, "--yes")
    assert again.returncode == 0, again.stderr
    assert [event.split()[0] for event in _platform_events(url)].count("signing_key.retired") == 1
