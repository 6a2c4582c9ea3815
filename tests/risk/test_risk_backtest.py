"""`billfold risk backtest`: stored decisions replayed through a rule file, the active rule
set and an older ruleset version; hits, would-be actions, changed outcomes, and
precision/recall against labels."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billfold.cli import app
from billfold.kit.db import UnitOfWork, parse_database_url
from billfold.kit.ids import format_id
from billfold.risk.backtest import BacktestReport, load_ruleset, run_backtest
from billfold.risk.labels import LabelSource, record_label
from billfold.risk.service import RiskEngine
from billfold.risk.types import Action
from cli_support import billfold
from risk.risk_support import FixedFeatures, add_active_rule, movement, run


def _history(database_url: str, tenant_id: uuid.UUID) -> None:
    """Four decisions (amounts 1 to 4) under a block rule (amount 1, ruleset version 1)
    and a shadow review rule (amount 2, version 2); movements 1 and 2 labelled fraud,
    movement 3 legitimate."""
    engine = RiskEngine(FixedFeatures())

    async def go(unit_of_work: UnitOfWork) -> None:
        async with unit_of_work.begin() as session:
            await add_active_rule(
                session, tenant_id=tenant_id, expression="amount == 1", action=Action.BLOCK
            )
            await add_active_rule(
                session,
                tenant_id=tenant_id,
                expression="amount == 2",
                action=Action.REVIEW,
                shadow=True,
            )
        for amount in (1, 2, 3, 4):
            async with unit_of_work.begin() as session:
                decision = await engine.decide(session, movement(tenant_id, amount=amount))
                if amount <= 3:
                    await record_label(
                        session,
                        tenant_id=tenant_id,
                        mode="test",
                        reference=format_id("rdc", decision.id),
                        fraud=amount <= 2,
                        source=LabelSource.ANALYST,
                        decision_id=decision.id,
                        at_ns=time.time_ns(),
                    )

    run(database_url, go)


def _rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    common = {"mode": "test", "score": 100, "reason": "test"}
    rules = [
        {**common, "name": "small", "expression": "amount <= 2", "action": "review"},
        {
            **common,
            "name": "four",
            "expression": "amount == 4",
            "action": "block",
            "enforcement": "shadow",
        },
    ]
    for rule in rules:
        rule.setdefault("enforcement", "enforcing")
    path.write_text(json.dumps({"rules": rules}))
    return path


def _backtest(database_url: str, spec: str, tenant_id: uuid.UUID) -> BacktestReport:
    async def go(unit_of_work: UnitOfWork) -> BacktestReport:
        async with unit_of_work.begin() as session:
            ruleset = await load_ruleset(session, spec, tenant_id=tenant_id, mode="test")
        return await run_backtest(
            unit_of_work, ruleset, tenant_id=tenant_id, mode="test", since_ns=0, batch_size=3
        )

    return run(database_url, go)


def test_a_rule_file_replayed_over_stored_decisions(database_url: str, tmp_path: Path) -> None:
    tenant_id = uuid.uuid4()
    _history(database_url, tenant_id)
    summary = _backtest(database_url, str(_rules_file(tmp_path)), tenant_id).to_json()
    assert summary["decisions"] == 4
    assert summary["hits"] == {
        "small": {"hits": 2, "shadow": False},
        "four": {"hits": 1, "shadow": True},
    }
    assert summary["would_be"] == {"allow": 2, "challenge": 0, "review": 2, "block": 0}
    assert summary["decided"] == {"allow": 3, "challenge": 0, "review": 0, "block": 1}
    assert summary["changed"] == 2
    assert summary["changes"] == [
        {"from": "allow", "to": "review", "count": 1},
        {"from": "block", "to": "review", "count": 1},
    ]
    assert summary["labelled"] == 3
    replayed, stored = summary["replayed"], summary["stored"]
    assert (replayed["precision"], replayed["recall"]) == (1.0, 1.0)  # type: ignore[index]
    assert (stored["precision"], stored["recall"]) == (1.0, 0.5)  # type: ignore[index]


def test_the_active_rule_set_changes_no_outcome(database_url: str) -> None:
    tenant_id = uuid.uuid4()
    _history(database_url, tenant_id)
    report = _backtest(database_url, "active", tenant_id)
    assert report.decisions == 4 and report.changed == 0
    assert dict(report.hits) == dict.fromkeys(report.hits, 1)
    assert len(report.hits) == 2 and len(report.shadow_rules) == 1


def test_a_ruleset_version_names_the_rules_then_in_force(database_url: str) -> None:
    tenant_id = uuid.uuid4()
    _history(database_url, tenant_id)
    first = _backtest(database_url, "1", tenant_id)
    assert sum(first.hits.values()) == 1 and not first.shadow_rules
    assert _backtest(database_url, "0", tenant_id).hits == {}


def test_the_command_prints_a_json_summary_and_tables(database_url: str, tmp_path: Path) -> None:
    tenant_id = uuid.uuid4()
    _history(database_url, tenant_id)
    runner = CliRunner()
    arguments = [
        "risk",
        "backtest",
        str(_rules_file(tmp_path)),
        "--since",
        "2000-01-01T00:00:00Z",
        "--tenant",
        format_id("ten", tenant_id),
        "--mode",
        "test",
        "--database-url",
        database_url,
    ]
    as_json = runner.invoke(app, [*arguments, "--json"])
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert (summary["decisions"], summary["changed"]) == (4, 2)
    as_tables = runner.invoke(app, arguments)
    assert as_tables.exit_code == 0, as_tables.output
    assert "Outcomes that change: 2" in as_tables.stdout
    future = runner.invoke(app, [*arguments[:4], "2999-01-01", *arguments[5:], "--json"])
    assert json.loads(future.stdout.strip().splitlines()[-1])["decisions"] == 0


def test_a_backtest_reads_beside_a_writer_on_sqlite(database_url: str, tmp_path: Path) -> None:
    """It only reads: on SQLite it took the write lock, so it waited for the application's
    writes (and held them up) and failed with "database is locked" on a busy database."""
    sqlite_path = parse_database_url(database_url).sqlite_path
    if sqlite_path is None:
        pytest.skip("PostgreSQL readers never wait for a writer")
    tenant_id = uuid.uuid4()
    _history(database_url, tenant_id)
    writer = sqlite3.connect(sqlite_path)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the application, mid-write
        ran = CliRunner().invoke(
            app,
            [
                *("risk", "backtest", str(_rules_file(tmp_path)), "--since", "2000-01-01"),
                *("--tenant", format_id("ten", tenant_id), "--mode", "test", "--json"),
                *("--database-url", database_url),
            ],
        )
    finally:
        writer.rollback()
        writer.close()
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout.strip().splitlines()[-1])["decisions"] == 4


def test_a_database_that_cannot_be_reached_is_the_one_given(tmp_path: Path) -> None:
    """`--database-url` names the database the failure was on, not BILLFOLD_DATABASE_URL's."""
    ran = billfold(
        "risk", "backtest", str(_rules_file(tmp_path)), "--since", "2000-01-01", "--json",
        "--database-url", "postgresql://nobody:hunter2@127.0.0.1:1/elsewhere",
        environment={"BILLFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/configured.db"},
    )  # fmt: skip
    assert ran.returncode == 1 and ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert "(database: PostgreSQL nobody@127.0.0.1:1/elsewhere)" in line
    assert "configured.db" not in line and "hunter2" not in line


def test_a_stored_rule_set_needs_a_tenant_and_a_bad_file_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    common = ["--since", "2000-01-01", "--database-url", database_url]
    stored = runner.invoke(app, ["risk", "backtest", "active", *common])
    assert stored.exit_code == 1 and "--tenant" in stored.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "x", "expression": "nope >", "mode": "test"}]))
    refused = runner.invoke(app, ["risk", "backtest", str(bad), *common])
    assert refused.exit_code == 1
    malformed = runner.invoke(app, ["risk", "backtest", "active", "--since", "yesterday"])
    assert malformed.exit_code == 2
