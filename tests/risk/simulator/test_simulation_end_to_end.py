"""A small simulation against the whole application in this process, on both backends:
it completes, writes its records, labels them through the API, and the books balance."""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from billfold.app import create_app
from billfold.kit.ids import parse_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.risk.models import RiskLabel
from billfold.risk.simulator.driver import read_records, run_simulation
from billfold.risk.simulator.evaluate import evaluate
from billfold.risk.simulator.generator import MONEY_KINDS, Pattern, SimulationConfig, generate
from billfold.risk.simulator.in_process import InProcessApp, in_process
from billfold.wallets.service import ledger_tenant_of
from identity.users.users_support import MASTER_KEY, users_config

CONFIG = SimulationConfig(seed=3, customers=12, merchants=3, hours=4, fraud_rate=0.1)


def _app(database_url: str) -> object:
    app = create_app(
        Settings(
            database_url=database_url,
            embedded_worker=False,
            master_key=MASTER_KEY,
            rate_limit_sign_in_requests=10_000,
            ledger_batch_window_ms=0,
            log_level="warning",
        )
    )
    app.state.users_config = users_config()  # cheap password hashing
    return app


def _assert_books(running: InProcessApp, tenant_id: uuid.UUID) -> None:
    """`ledger verify` passes, and this tenant's balances sum to zero per currency."""
    ledger: Ledger = running.app.state.ledger
    report = running.call(functools.partial(ledger.verify, grace_s=60))
    assert report.ok, report.problems
    page = running.call(
        functools.partial(
            ledger.list_accounts, tenant_id=ledger_tenant_of(tenant_id, "test"), limit=8190
        )
    )
    assert page.items
    posted: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for account in page.items:
        posted[account.ledger] += account.credits_posted - account.debits_posted
        pending[account.ledger] += account.credits_pending - account.debits_pending
    assert all(value == 0 for value in posted.values()), posted
    assert all(value == 0 for value in pending.values()), pending


def _labels(running: InProcessApp, tenant_id: uuid.UUID) -> int:
    async def count() -> int:
        async with running.app.state.unit_of_work.read() as session:
            statement = select(func.count()).where(RiskLabel.tenant_id == tenant_id)
            return int((await session.execute(statement)).scalar_one())

    return running.call(count)


def test_a_small_simulation_completes_labels_and_balances(
    database_url: str, tmp_path: Path
) -> None:
    scenario = generate(CONFIG)
    out = tmp_path / "sim.jsonl"
    with in_process(_app(database_url)) as running:
        report = run_simulation(
            scenario,
            base_url="http://billfold.simulation",
            api_key=running.new_api_key(),
            out=out,
            concurrency=4,
            label=True,
            http_transport=running.transport,
            progress=False,
        )
        tenant_id = parse_id("ten", report.tenant_id)
        _assert_books(running, tenant_id)
        assert _labels(running, tenant_id) == report.labels_posted

    records = read_records(out)
    setup = [record for record in records if record["phase"] == "setup"]
    run = [record for record in records if record["phase"] == "run"]
    assert len(setup) == CONFIG.customers + CONFIG.merchants
    assert all(r["state"] == "succeeded" for r in setup if r["kind"] == "funding")
    assert [r["index"] for r in run] == [action.index for action in scenario.actions]
    assert all(r["status"] is not None for r in run), "every action got an answer"
    assert {r["pattern"] for r in run if r["fraud"]} == {pattern.value for pattern in Pattern}
    money = [r for r in run if r["kind"] in {kind.value for kind in MONEY_KINDS}]
    assert sum(1 for r in money if r.get("payment_id")) >= len(money) * 3 // 4
    assert report.labels_posted == sum(
        1 for r in run if r.get("payment_id") or r.get("decision_id")
    )
    takeover_logins = [r for r in run if r["kind"] == "login_failed"]
    assert takeover_logins and all(r["status"] == 401 for r in takeover_logins)
    evaluation = evaluate(records)
    assert evaluation.movements == len(money)
    assert evaluation.fraud == sum(1 for r in money if r["fraud"])
