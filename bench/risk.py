"""The risk engine: decision latency in-process, and how well rules and models catch a
simulated fraud workload.

    uv run python bench/risk.py --seconds 10

One application, in this process, on an embedded SQLite database (the default setup), with
the starter rule set `bench/risk_rules.json` written straight to the rules tables (the
benchmark skips four-eyes activation):

1. **rules only**: `billfold simulate` (seed 42, labelled) plays a PaySim-style workload
   through the public API; each action's answer (blocked, challenged, held for review, or
   not) is compared with the ground truth;
2. the models learn from that run's labels (the supervised model) and decisions (the
   anomaly detector); the new versions are promoted;
3. **rules plus model**: a second workload (seed 43) on the same tenant;
4. **latency**: for `--seconds`, `RiskEngine.decide` on movements of the simulated users,
   each in its own transaction (what a payment flow pays), with the trained model active.

The reference is the target: a p99 of at most 5 ms (`p99_ratio` = 5 ms / p99, ≥ 1 meets
it). The simulator compresses time (hours of activity in seconds of wall time), so
velocity windows see more than real traffic would: precision figures are pessimistic.

The last line is one JSON object: `p50_ms`, `p99_ms`, `decisions_per_s`,
`rules_precision`, `rules_recall`, `rules_fpr`, `model_precision`, `model_recall`,
`model_fpr`, `p99_ratio`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import logging
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from _common import percentile, print_table
from billfold.app import create_app
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id
from billfold.kit.settings import Settings
from billfold.risk.features.service import feature_source_from_settings
from billfold.risk.models import RiskRule, RiskRuleVersion
from billfold.risk.repository import RulesetRepository
from billfold.risk.scoring.config import ScoringConfig
from billfold.risk.scoring.registry import model_registry_from_settings
from billfold.risk.scoring.service import Actor, promote
from billfold.risk.scoring.tasks import train
from billfold.risk.service import RiskEngine
from billfold.risk.simulator.driver import run_simulation
from billfold.risk.simulator.generator import SimulationConfig, generate
from billfold.risk.simulator.in_process import BASE_URL, InProcessApp, in_process
from billfold.risk.types import Movement, MovementKind

TARGET_P99_MS = 5.0
PROFILE: Any = None
"""A cProfile.Profile of the latency phase when BILLFOLD_BENCH_PROFILE names a file."""
RULES_FILE = Path(__file__).with_name("risk_rules.json")
SEED_RULES, SEED_MODEL = 42, 43


def _settings(database_url: str, counters: str) -> Settings:
    return Settings(
        database_url=database_url,
        risk_counters=counters,
        log_level="warning",
        rate_limit_sign_in_requests=10_000,
        rate_limit_credential_requests=10_000,
        risk_ip_country_header="CF-IPCountry",
        risk_trusted_proxies=["127.0.0.1"],
        risk_models_labels_min=50,
        master_key=base64.b64encode(bytes(range(32))).decode(),  # held payouts are sealed
    )


async def _install_rules(unit_of_work: Any, *, tenant_id: uuid.UUID) -> int:
    """The starter rules, active at once (straight to the tables: no four-eyes here)."""
    rules = json.loads(RULES_FILE.read_text(encoding="utf-8"))["rules"]
    now = time.time_ns()
    author = uuid.uuid4()
    async with unit_of_work.begin() as session:
        ruleset = await RulesetRepository(session).bump(
            tenant_id=tenant_id, mode="test", now_ns=now
        )
        for rule in rules:
            rule_id = new_id()
            session.add(
                RiskRule(
                    id=rule_id,
                    tenant_id=tenant_id,
                    mode="test",
                    name=rule["name"],
                    current_version=1,
                    latest_version=1,
                    created_by=author,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.add(
                RiskRuleVersion(
                    id=new_id(),
                    rule_id=rule_id,
                    tenant_id=tenant_id,
                    mode="test",
                    version=1,
                    expression=rule["expression"],
                    action=rule["action"],
                    score=rule["score"],
                    reason=rule["reason"],
                    responses="[]",
                    enforcement=rule["enforcement"],
                    state="active",
                    created_by=author,
                    created_at=now,
                    approval_id=None,
                    activated_at=now,
                    activated_by=author,
                    active_from_ruleset=ruleset,
                    active_until_ruleset=None,
                )
            )
    return len(rules)


def _simulate(running: InProcessApp, *, seed: int, key: str, customers: int, label: bool) -> Any:
    scenario = generate(
        SimulationConfig(seed=seed, customers=customers, merchants=8, hours=12, fraud_rate=0.05)
    )
    return run_simulation(
        scenario,
        base_url=BASE_URL,
        api_key=key,
        out=None,
        concurrency=8,
        label=label,
        http_transport=running.transport,
        progress=True,
    )


async def _train_and_promote(app: Any, *, tenant_id: uuid.UUID) -> list[str]:
    unit_of_work = app.state.unit_of_work
    config = ScoringConfig.from_settings(app.state.settings)
    results = await train(
        unit_of_work, config=config, tenant_id=tenant_id, mode="test", now_ns=time.time_ns()
    )
    promoted = []
    for result in results:
        if result.version is None:
            continue
        async with unit_of_work.begin() as session:
            await promote(
                session,
                tenant_id=tenant_id,
                model_id=result.version.id,
                actor=Actor.system(),
                now_ns=time.time_ns(),
            )
        promoted.append(f"{result.kind} (learned {result.learned})")
    registry = app.state.risk_models
    registry.invalidate(tenant_id, "test")
    await registry.refresh(tenant_id, "test")
    return promoted


async def _user_ids(unit_of_work: Any, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    from billfold.identity.users.models import EndUser

    async with unit_of_work.begin() as session:
        rows = await session.execute(select(EndUser.id).where(EndUser.tenant_id == tenant_id))
        return list(rows.scalars())


async def _latency(
    app: Any, *, tenant_id: uuid.UUID, seconds: float
) -> tuple[list[float], list[float]]:
    """Each decision's own time (`decide`: features, rules, model, the stored row, the
    counters), and its whole transaction's (with the commit a movement pays anyway)."""
    engine, unit_of_work = app.state.risk, app.state.unit_of_work
    users = await _user_ids(unit_of_work, tenant_id)
    rng = random.Random(7)
    kinds = [MovementKind.P2P, MovementKind.MERCHANT_PAYMENT, MovementKind.WITHDRAWAL]
    durations: list[float] = []
    transactions: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        payer, payee = rng.sample(users, 2)
        movement = Movement(
            tenant_id=tenant_id,
            mode="test",
            kind=rng.choice(kinds),
            amount=rng.randrange(100, 200_000),
            currency="USD",
            occurred_at_ns=time.time_ns(),
            user_id=payer,
            payee=f"usr_{payee.hex}",
            ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            ip_country=rng.choice(["FR", "DE", "US"]),
            reference=f"pay_{new_id().hex}",
        )
        began = time.perf_counter()
        if PROFILE is not None:
            PROFILE.enable()
        async with unit_of_work.begin() as session:
            started = time.perf_counter()
            await engine.decide(session, movement)
            durations.append((time.perf_counter() - started) * 1000.0)
        if PROFILE is not None:
            PROFILE.disable()
        transactions.append((time.perf_counter() - began) * 1000.0)
    return durations, transactions


async def _quiet_latency(
    settings: Settings, *, tenant_id: uuid.UUID, seconds: float
) -> tuple[list[float], list[float]]:
    """The same loop on an engine of its own over the same database, in a process doing
    nothing else (the application stopped): the engine's latency without an API's other
    work (request handling, the embedded worker) interleaved on the event loop."""
    engine = create_engine(parse_database_url(settings.database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    registry = model_registry_from_settings(settings, unit_of_work=unit_of_work)
    await registry.refresh(tenant_id, "test")
    source = feature_source_from_settings(settings, unit_of_work)
    risk = RiskEngine(
        source,
        registry=registry,
        model_review_score=settings.risk_model_review_score,
        model_block_score=settings.risk_model_block_score,
        ruleset_check_interval_s=settings.risk_ruleset_check_interval_s,
    )
    standalone = SimpleNamespace(state=SimpleNamespace(risk=risk, unit_of_work=unit_of_work))
    # As `billfold serve` runs: startup objects frozen, young collections less often.
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(settings.gc_gen0_threshold, *previous[1:])
    try:
        return await _latency(standalone, tenant_id=tenant_id, seconds=seconds)
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
        await source.aclose()
        await engine.dispose()


def _figures(report: Any) -> dict[str, Any]:
    flagged = report.evaluation().as_dict()["overall"]["flagged"]
    return {key: flagged.get(key) for key in ("tp", "fp", "fn", "tn", "precision", "recall", "fpr")}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="Latency phase length.")
    parser.add_argument("--customers", type=int, default=60, help="Customers per simulation.")
    parser.add_argument(
        "--counters",
        choices=["auto", "memory", "database", "redis"],
        default="auto",
        help="Velocity counters (auto: Redis when BILLFOLD_REDIS_URL is set, else the database).",
    )
    arguments = parser.parse_args()
    logging.disable(logging.WARNING)
    global PROFILE
    profile_path = os.environ.get("BILLFOLD_BENCH_PROFILE")
    if profile_path:
        import cProfile

        PROFILE = cProfile.Profile()
    with tempfile.TemporaryDirectory() as directory:
        settings = _settings(f"sqlite:///{Path(directory) / 'risk.db'}", arguments.counters)
        app = create_app(settings)
        with in_process(app) as running:
            tenant_id, key = running.new_tenant(name="Risk bench")
            rules = running.call(
                lambda: _install_rules(app.state.unit_of_work, tenant_id=tenant_id)
            )
            app.state.risk.forget(tenant_id, "test")
            print(f"{rules} starter rules active; simulating (rules only)…")
            first = _simulate(
                running, seed=SEED_RULES, key=key, customers=arguments.customers, label=True
            )
            rules_only = _figures(first)
            promoted = running.call(lambda: _train_and_promote(app, tenant_id=tenant_id))
            print(f"models promoted: {', '.join(promoted) or 'none'}; simulating (rules + model)…")
            second = _simulate(
                running, seed=SEED_MODEL, key=key, customers=arguments.customers, label=False
            )
            with_model = _figures(second)
            measured, _whole = running.call(
                lambda: _latency(app, tenant_id=tenant_id, seconds=arguments.seconds)
            )
        in_app_p99 = percentile(sorted(measured), 0.99)
        quiet, quiet_whole = asyncio.run(
            _quiet_latency(settings, tenant_id=tenant_id, seconds=arguments.seconds)
        )
    durations, transactions = sorted(quiet), sorted(quiet_whole)
    if PROFILE is not None and profile_path:
        PROFILE.dump_stats(profile_path)
    p50, p99 = percentile(durations, 0.50), percentile(durations, 0.99)
    with_commit_p99 = percentile(transactions, 0.99)
    decisions_per_s = len(durations) / arguments.seconds
    print_table(
        "Detection (flagged = blocked, challenged or held for review)",
        ["run", "tp", "fp", "fn", "tn", "precision", "recall", "fpr", "actions/s"],
        [
            [
                "rules only",
                *(_fmt(rules_only[k]) for k in ("tp", "fp", "fn", "tn")),
                _fmt(rules_only["precision"]),
                _fmt(rules_only["recall"]),
                _fmt(rules_only["fpr"]),
                f"{first.actions_per_s:.1f}",
            ],
            [
                "rules + model",
                *(_fmt(with_model[k]) for k in ("tp", "fp", "fn", "tn")),
                _fmt(with_model["precision"]),
                _fmt(with_model["recall"]),
                _fmt(with_model["fpr"]),
                f"{second.actions_per_s:.1f}",
            ],
        ],
    )
    print_table(
        f"Decision latency (in-process, SQLite, {arguments.counters} counters)",
        [
            "decisions",
            "decisions/s",
            "p50 ms",
            "p99 ms",
            "p99 with commit",
            "p99 in the app",
            "target",
            "ratio",
        ],
        [
            [
                str(len(durations)),
                f"{decisions_per_s:.0f}",
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{with_commit_p99:.2f}",
                f"{in_app_p99:.2f}",
                f"{TARGET_P99_MS:.1f}",
                f"{TARGET_P99_MS / p99:.2f}",
            ]
        ],
    )
    print(
        json.dumps(
            {
                "bench": "risk",
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "decisions_per_s": round(decisions_per_s, 1),
                "p99_with_commit_ms": round(with_commit_p99, 3),
                "p99_in_app_ms": round(in_app_p99, 3),
                "rules_precision": rules_only["precision"],
                "rules_recall": rules_only["recall"],
                "rules_fpr": rules_only["fpr"],
                "model_precision": with_model["precision"],
                "model_recall": with_model["recall"],
                "model_fpr": with_model["fpr"],
                "p99_ratio": round(TARGET_P99_MS / p99, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
