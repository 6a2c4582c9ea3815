"""`billfold tenant create` and `billfold apikey create|revoke`, end to end on a SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

from cli_support import Ran, billfold
from identity.identity_support import api_client, bearer

KEY_LINE = re.compile(r"^(test|live) key +(key_[0-9a-f]{32}) +(bf_(test|live)_\S+)$", re.MULTILINE)


def _billfold(database_url: str, *arguments: str) -> Ran:
    return billfold(*arguments, environment={"BILLFOLD_DATABASE_URL": database_url})


def test_tenant_create_migrates_a_new_file_and_prints_working_keys_once(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cli.db"
    created = _billfold(database_url, "tenant", "create", "Acme Wallet")
    assert created.returncode == 0, created.stderr
    tenant_id = re.search(r"^tenant +(ten_[0-9a-f]{32}) +Acme Wallet$", created.stdout, re.M)
    assert tenant_id is not None, created.stdout
    keys = {mode: (key_id, key) for mode, key_id, key, _ in KEY_LINE.findall(created.stdout)}
    assert set(keys) == {"test", "live"}
    assert all(key.startswith(f"bf_{mode}_") for mode, (_, key) in keys.items())
    assert "shown this once" in created.stderr

    made = _billfold(
        database_url,
        "apikey", "create", "--tenant", tenant_id.group(1), "--mode", "live",
        "--scope", "ledger:read", "--scope", "payments:read", "--name", "reports",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [(mode, reader_id, reader_key, _)] = KEY_LINE.findall(made.stdout)
    assert mode == "live"

    with api_client(database_url) as client:
        listed = client.get("/v1/api-keys", headers=bearer(keys["live"][1]))
        assert listed.status_code == 200
        items = {item["id"]: item for item in listed.json()["items"]}
        assert set(items) == {keys["live"][0], reader_id}
        assert items[keys["live"][0]]["scopes"] == ["tenant:admin"]
        assert items[reader_id]["scopes"] == ["ledger:read", "payments:read"]
        assert reader_key not in listed.text

    revoked = _billfold(database_url, "apikey", "revoke", reader_id)
    assert revoked.returncode == 0, revoked.stderr
    with api_client(database_url) as client:
        shown = client.get(f"/v1/api-keys/{reader_id}", headers=bearer(keys["live"][1]))
        assert shown.json()["revoked_at"] is not None
        assert client.get("/v1/api-keys", headers=bearer(reader_key)).status_code == 401


def test_the_commands_refuse_unknown_tenants_and_keys_clearly(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cli.db"
    unknown_tenant = _billfold(
        database_url, "apikey", "create", "--tenant", "ten_" + "0" * 32, "--scope", "ledger:read"
    )
    unknown_key = _billfold(database_url, "apikey", "revoke", "key_" + "0" * 32)
    malformed = _billfold(database_url, "apikey", "revoke", "nonsense")
    assert unknown_tenant.returncode == 1
    assert "Tenant not found" in unknown_tenant.stderr
    assert unknown_key.returncode == 1
    assert "API key not found" in unknown_key.stderr
    assert malformed.returncode == 1
    assert "key_<32 hex digits>" in malformed.stderr
    assert "bf_" not in unknown_tenant.stdout


def test_an_unusable_database_or_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A malformed BILLFOLD_DATABASE_URL, a database that cannot be used or reached, and
    an invalid setting each end in one clear line on stderr and a non-zero exit."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    cases = [
        ("mysql://db/billfold", {}, 1, "(invalid_database_url)"),
        (f"sqlite:///{garbage}", {}, 1, "file is not a database"),
        ("postgresql://nobody:hunter2@127.0.0.1:1/billfold", {}, 1, "ConnectionRefusedError"),
        (f"sqlite:///{tmp_path}/cli.db", {"BILLFOLD_PORT": "eighty"}, 2, "Invalid settings"),
    ]
    for database_url, extra, status, words in cases:
        if database_url.startswith("postgresql"):  # (`ledger verify` checks a SQLite path)
            ran = billfold("ledger", "verify", environment={"BILLFOLD_DATABASE_URL": database_url})
            assert (ran.returncode, "Traceback" in ran.stderr) == (1, False), ran.stderr
        for arguments in (("tenant", "create", "Acme"), ("apikey", "revoke", "key_" + "0" * 32)):
            ran = billfold(*arguments, environment={"BILLFOLD_DATABASE_URL": database_url, **extra})
            assert ran.returncode == status, (arguments, database_url, ran.stderr)
            assert words in ran.stderr, (arguments, database_url, ran.stderr)
            assert "Traceback" not in ran.stderr, ran.stderr
            assert len(ran.stderr.splitlines()) == 1, ran.stderr
            assert "hunter2" not in ran.stderr
            assert ran.stdout == ""


def test_invalid_settings_are_named_in_one_line_without_their_values(tmp_path: Path) -> None:
    """A check of several settings at once had Pydantic quote every setting given, and the
    start of the first was printed: here the master key's."""
    master_key = "lcvO6G7xw5bVTvJEC6BDrqbx4J5gOn04lvNSZXPPDUc="
    environment = {
        "BILLFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "BILLFOLD_MASTER_KEY": master_key,
        "BILLFOLD_RISK_MODEL_REVIEW_SCORE": "0.99",
        "BILLFOLD_RISK_MODEL_BLOCK_SCORE": "0.9",
    }
    ran = billfold("tenant", "create", "Acme", environment=environment)
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == [
        "Invalid settings: Value error, risk_model_review_score must be <= risk_model_block_score"
    ]
    named = billfold(
        "tenant", "create", "Acme",
        environment={**environment, "BILLFOLD_RISK_MODEL_REVIEW_SCORE": None,
                     "BILLFOLD_PORT": "eighty", "BILLFOLD_WORKERS": "0"},
    )  # fmt: skip
    assert named.returncode == 2
    [line] = named.stderr.splitlines()
    assert "BILLFOLD_PORT: Input should be a valid integer" in line
    assert "BILLFOLD_WORKERS: Input should be greater than or equal to 1" in line
    assert master_key[:6] not in ran.stderr + named.stderr
    assert not (tmp_path / "cli.db").exists()


def test_apikey_create_refuses_a_test_key_a_live_only_scope(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cli.db"
    created = _billfold(database_url, "tenant", "create", "Audited")
    assert created.returncode == 0, created.stderr
    tenant_id = re.search(r"^tenant +(ten_[0-9a-f]{32}) ", created.stdout, re.M)
    assert tenant_id is not None, created.stdout
    asked = ["apikey", "create", "--tenant", tenant_id.group(1), "--scope", "audit:read"]
    refused = _billfold(database_url, *asked)  # test mode is the default
    assert refused.returncode == 1
    assert "live_only_scope" in refused.stderr and "bf_" not in refused.stdout
    made = _billfold(database_url, *asked, "--mode", "live")
    assert made.returncode == 0, made.stderr
    [(mode, _, _, _)] = KEY_LINE.findall(made.stdout)
    assert mode == "live"
