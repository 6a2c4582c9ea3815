"""`billfold operator create`, end to end on a SQLite file: a one-time password or one read
from standard input, and an operator who can then sign in."""

from __future__ import annotations

import re
from pathlib import Path

from cli_support import Ran, billfold
from identity.operators.operators_support import operators_app

TENANT_LINE = re.compile(r"^tenant +(ten_[0-9a-f]{32}) ", re.MULTILINE)
OPERATOR_LINE = re.compile(r"^operator +(opr_[0-9a-f]{32}) +(\S+)$", re.MULTILINE)
PASSWORD_LINE = re.compile(r"^password +(\S+)$", re.MULTILINE)


def _billfold(database_url: str, *arguments: str, stdin: str | None = None) -> Ran:
    return billfold(*arguments, environment={"BILLFOLD_DATABASE_URL": database_url}, stdin=stdin)


def test_operator_create_prints_a_one_time_password_or_reads_one(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    database_url = f"sqlite:///{tmp_path}/cli.db"
    tenant = _billfold(database_url, "tenant", "create", "Acme")
    assert tenant.returncode == 0, tenant.stderr
    tenant_match = TENANT_LINE.search(tenant.stdout)
    assert tenant_match is not None
    tenant_id = tenant_match.group(1)

    generated = _billfold(
        database_url,
        "operator", "create", "--tenant", tenant_id, "--email", "Ada@Example.com",
        "--role", "admin", "--role", "finance",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert OPERATOR_LINE.search(generated.stdout) is not None
    password_match = PASSWORD_LINE.search(generated.stdout)
    assert password_match is not None
    assert "shown this once" in generated.stderr

    chosen = _billfold(
        database_url,
        "operator", "create", "--tenant", tenant_id, "--email", "bob@example.com",
        "--role", "support", "--password-stdin",
        stdin="a long chosen passphrase\n",
    )  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr
    assert PASSWORD_LINE.search(chosen.stdout) is None

    refused = [
        _billfold(database_url, "operator", "create", "--tenant", tenant_id,
                  "--email", "bob@example.com", "--role", "support"),
        _billfold(database_url, "operator", "create", "--tenant", tenant_id,
                  "--email", "eve@example.com", "--role", "root"),
        _billfold(database_url, "operator", "create", "--tenant", tenant_id,
                  "--email", "eve@example.com", "--role", "support", "--password-stdin",
                  stdin="short\n"),
    ]  # fmt: skip
    assert [result.returncode for result in refused] == [1, 2, 1]

    with TestClient(operators_app(database_url)) as client:
        ada = client.post(
            "/v1/operators/login",
            json={
                "tenant_id": tenant_id,
                "email": "ada@example.com",
                "password": password_match.group(1),
            },
        )
        bob = client.post(
            "/v1/operators/login",
            json={
                "tenant_id": tenant_id,
                "email": "bob@example.com",
                "password": "a long chosen passphrase",
            },
        )
    assert ada.status_code == 201, ada.text
    assert ada.json()["operator"]["roles"] == ["admin", "finance"]
    assert ada.json()["operator"]["password_change_required"] is True
    assert bob.status_code == 201, bob.text
    assert bob.json()["operator"]["password_change_required"] is False
