"""`billfold audit verify --jwks FILE` trusts only the keys of the file meant for audit
checkpoints, as `/.well-known/jwks.json` publishes them: Ed25519 keys for signatures
(`use` "sig", `alg` "EdDSA", `kid` "sig_…") and, of those, none the database knows as a
signing key of another purpose or of a tenant. It trusted every Ed25519 key of the file."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

from audit.audit_support import MASTER_KEY, opened
from audit.test_audit_cli import _billfold
from billfold.audit.audit import AuditService
from billfold.keys.keyring import Keyring
from billfold.keys.keystore import LocalKeystore
from billfold.keys.signing import HierarchySigningKeys


def _tenant(url: str, name: str) -> str:
    created = _billfold(url, "tenant", "create", name)
    assert created.returncode == 0, created.stderr
    match = re.search(r"^tenant +(ten_[0-9a-f]{32})", created.stdout, re.M)
    assert match is not None
    return match.group(1)


def _sign_with_purpose(url: str, purpose: str) -> int:
    """Checkpoints signed by the platform's `purpose` signing key instead of `audit`'s."""

    async def sign() -> int:
        keyring = Keyring(lambda: LocalKeystore(base64.b64decode(MASTER_KEY)))
        try:
            async with opened(url) as unit_of_work:
                service = AuditService(
                    unit_of_work,
                    signing_keys=HierarchySigningKeys(keyring, purpose=purpose),
                    checkpoint_entries_max=100_000,
                )
                return await service.checkpoint_due()
        finally:
            keyring.close()

    return asyncio.run(sign())


def test_verify_trusts_only_the_audit_keys_of_a_jwks(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url = isolated_database_url
    _tenant(url, "Audited")
    assert _billfold(url, "audit", "checkpoint").returncode == 0
    published = json.loads(_billfold(url, "audit", "public-key", "--jwks").stdout)
    [audit_jwk] = published["keys"]
    jwks_file = tmp_path / "jwks.json"

    def verify(keys: list[dict[str, object]]) -> tuple[int, str, str]:
        jwks_file.write_text(json.dumps({"keys": keys}))
        ran = _billfold(url, "audit", "verify", "--jwks", str(jwks_file))
        return ran.returncode, ran.stdout, ran.stderr

    code, out, err = verify([audit_jwk])
    assert code == 0, out + err
    # Keys published for something else than verifying signatures are not trusted.
    for changed in ({"use": "enc"}, {"alg": "ES256"}, {"kid": "not-a-signing-key-id"}):
        jwk = {**audit_jwk, **changed}
        code, out, err = verify([jwk])
        assert code in (1, 2), (changed, out, err)
        assert code == 2 or "untrusted key" in out, (changed, out, err)
    # Another kind of key beside the audit key is skipped, not a reason to refuse the file.
    rsa = {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": "AQAB", "e": "AQAB"}
    code, out, err = verify([rsa, audit_jwk])
    assert code == 0, out + err
    # One kid twice with two keys: which one signed is ambiguous.
    twin = {**audit_jwk, "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    code, out, err = verify([audit_jwk, twin])
    assert code == 2 and "kid" in err, out + err

    # A checkpoint signed by the platform's key of another purpose, published in the same
    # JWKS: the default verification refuses it, and so must --jwks.
    assert _billfold(url, "keys", "rotate-signing", "--purpose", "vouchers").returncode == 0
    _tenant(url, "Audited too")
    assert _sign_with_purpose(url, "vouchers") >= 1
    both = json.loads(_billfold(url, "audit", "public-key", "--jwks").stdout)["keys"]
    assert len(both) == 2
    default = _billfold(url, "audit", "verify")
    assert default.returncode == 1 and "untrusted key" in default.stdout, default.stdout
    code, out, err = verify(both)
    assert code == 1 and "untrusted key" in out, out + err
    assert "vouchers" in err, err
