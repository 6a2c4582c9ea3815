"""Fee schedules under a demanding client: fee line names that payments can store and tell
apart, tier thresholds with a currency, schedules and previews only for the caller's own
merchants, and concurrent replacements and creations."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.identity.types import Mode, Scope
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import BillfoldError
from billfold.payments.fees import service
from billfold.payments.fees.engine import (
    LINE_NAME_LENGTH_MAX,
    FeeRule,
    FeeSchedule,
    FeeTier,
    InvalidFeeSchedule,
    quote_fees,
    validate_schedule,
)
from billfold.payments.fees.types import FeeContext
from ledger.ledger_api_support import api, assert_problem, auth
from payments.fees.test_fees_api import CATCH_ALL, create, keys, merchant, preview
from payments.payments_support import World
from sqlite_support import done_while_locked

TWO_TIERS = (FeeTier(bps=200), FeeTier(volume_from_minor=3_000, bps=100))


def _movement(**fields: Any) -> FeeContext:
    values: dict[str, Any] = {
        "tenant_id": uuid.UUID(int=1),
        "merchant_id": None,
        "method": "wallet",
        "currency": "USD",
        "amount_minor": 10_000,
        "monthly_volume_minor": 0,
    }
    return FeeContext(**{**values, **fields})


# -- fee line names -------------------------------------------------------------------


def test_a_tiered_rule_name_leaves_room_for_its_tier_suffix() -> None:
    """Payments store a fee line's rule in 64 characters (and cut what is longer): a
    64-character tiered rule would show `www…w` for every tier, not `…_tier_2`."""
    too_long = FeeRule(name="w" * 64, currency="USD", tiers=TWO_TIERS)
    with pytest.raises(InvalidFeeSchedule, match="_tier_"):
        validate_schedule(FeeSchedule(rules=(too_long,)))
    longest = FeeRule(name="w" * (64 - len("_tier_2")), currency="USD", tiers=TWO_TIERS)
    validate_schedule(FeeSchedule(rules=(longest,)))
    validate_schedule(FeeSchedule(rules=(FeeRule(name="w" * 64, tiers=(FeeTier(bps=1),)),)))


def test_two_rules_never_name_their_fee_lines_alike() -> None:
    """A tiered `card` charges `card_tier_1`: a rule called `card_tier_1` would make the
    payment's fee lines ambiguous."""
    tiered = FeeRule(name="card", method="card", currency="USD", tiers=TWO_TIERS)
    lookalike = FeeRule(name="card_tier_1", tiers=(FeeTier(bps=5),))
    for rules in ((tiered, lookalike), (lookalike, tiered)):
        with pytest.raises(InvalidFeeSchedule, match="name their fee lines alike"):
            validate_schedule(FeeSchedule(rules=rules))


names = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9_]{0,63}", fullmatch=True),
    st.integers(min_value=50, max_value=64).map(lambda length: "w" * length),
    st.sampled_from(["card", "card_tier_1", "card_tier_2"]),
)


@settings(deadline=None, max_examples=200)
@given(
    rules=st.lists(
        st.tuples(names, st.integers(min_value=1, max_value=20)), min_size=1, max_size=6
    ),
    volume=st.integers(min_value=0, max_value=10**6),
)
def test_every_accepted_schedule_names_its_lines_storably_and_uniquely(
    rules: list[tuple[str, int]], volume: int
) -> None:
    built = tuple(
        FeeRule(
            name=name,
            method=f"m{index}",
            currency="USD",
            tiers=tuple(
                FeeTier(volume_from_minor=tier * 100, bps=1 + tier) for tier in range(count)
            ),
        )
        for index, (name, count) in enumerate(rules)
    )
    schedule = FeeSchedule(rules=built)
    try:
        validate_schedule(schedule)
    except InvalidFeeSchedule:
        return
    seen: dict[str, tuple[int, int]] = {}
    for index, rule in enumerate(built):
        for tier in range(len(rule.tiers)):
            quote = quote_fees(
                context=_movement(
                    method=f"m{index}", monthly_volume_minor=tier * 100 + volume % 100
                ),
                merchant_schedule=schedule,
                tenant_schedule=None,
            )
            (line,) = quote.lines
            assert len(line.rule) <= LINE_NAME_LENGTH_MAX
            assert seen.setdefault(line.rule, (index, tier)) == (index, tier)


# -- tier thresholds --------------------------------------------------------------------


def test_a_tiered_rule_names_the_currency_of_its_volume_thresholds() -> None:
    """`volume_from_minor: 10000000` is 100,000.00 EUR, 10,000,000 JPY or 10,000.000 KWD:
    like a fixed part, a threshold is minor units of one currency."""
    no_currency = FeeRule(name="all", tiers=TWO_TIERS)
    with pytest.raises(InvalidFeeSchedule, match="currency"):
        validate_schedule(FeeSchedule(rules=(no_currency,)))
    validate_schedule(FeeSchedule(rules=(FeeRule(name="all", tiers=(FeeTier(bps=50),)),)))


@pytest.mark.parametrize(
    "tier",
    [FeeTier(bps=1, fixed_minor=None), FeeTier(bps=1, volume_from_minor=None)],  # type: ignore[arg-type]
)
def test_a_missing_fixed_part_or_threshold_is_refused_not_a_crash(tier: FeeTier) -> None:
    with pytest.raises(InvalidFeeSchedule):
        validate_schedule(FeeSchedule(rules=(FeeRule(name="x", currency="USD", tiers=(tier,)),)))


def test_the_api_refuses_a_long_tiered_rule_name_and_a_tiered_rule_without_currency(
    database_url: str,
) -> None:
    _, key = keys(database_url)
    tiers = [{"bps": 200}, {"volume_from_minor": 3_000, "bps": 100}]
    with api(database_url) as client:
        for rule in (
            {"name": "w" * 64, "currency": "USD", "tiers": tiers},
            {"name": "all", "tiers": tiers},
        ):
            response = client.post(
                "/v1/fee-schedules", json={"name": "x", "rules": [rule]}, headers=auth(key)
            )
            assert_problem(response, 422, "invalid_fee_schedule")


def test_a_capture_records_the_tier_of_a_long_named_rule(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        name = "w" * (LINE_NAME_LENGTH_MAX - len("_tier_2"))
        rule = {
            "name": name,
            "method": "wallet",
            "currency": "USD",
            "tiers": [{"bps": 200}, {"volume_from_minor": 3_000, "bps": 100}],
        }
        body = {"merchant_id": shop, "name": "long", "rules": [rule]}
        response = world.client.post("/v1/fee-schedules", json=body, headers=world.api)
        assert response.status_code == 201, response.text
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 2_000, "currency": "USD", "capture": "automatic"},
            headers=world.api,
        ).json()
        paid = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        assert paid.status_code == 200, paid.text
        assert [(f["rule"], f["amount"]) for f in paid.json()["fees"]] == [(f"{name}_tier_1", "40")]


# -- merchants --------------------------------------------------------------------------


def test_schedules_and_previews_name_only_the_callers_own_merchants(database_url: str) -> None:
    """A schedule for a merchant id that is not the caller's (unknown, another tenant's, the
    other mode's) would be stored and never price anything: it is a 404, as is a preview."""
    scopes = [Scope.FEES_READ, Scope.FEES_WRITE, Scope.PAYMENTS_WRITE]
    _, key = keys(database_url, scopes)
    _, other = keys(database_url, scopes)
    with api(database_url) as client:
        theirs = merchant(client, other)
        live = merchant(client, keys(database_url, scopes, Mode.LIVE)[1])
        unknown = f"mer_{uuid.uuid4().hex}"
        for merchant_id in (theirs, live, unknown):
            body = {"name": "x", "merchant_id": merchant_id, "rules": [CATCH_ALL]}
            response = client.post("/v1/fee-schedules", json=body, headers=auth(key))
            assert_problem(response, 404, "merchant_not_found")
            quoted = client.post(
                "/v1/fee-quotes",
                json={
                    "method": "card",
                    "currency": "EUR",
                    "amount": "1",
                    "merchant_id": merchant_id,
                },
                headers=auth(key),
            )
            assert_problem(quoted, 404, "merchant_not_found")
        assert client.get("/v1/fee-schedules", headers=auth(key)).json()["items"] == []
        mine = merchant(client, key)
        created = create(client, key, merchant_id=mine, rules=[CATCH_ALL])
        assert created["merchant_id"] == mine
        assert preview(client, key, merchant_id=mine)["total"] == "50"


# -- concurrency ------------------------------------------------------------------------

RACERS = 8


def _race(database_url: str, attempt: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(parse_database_url(database_url), pool_size=RACERS)
        unit_of_work = UnitOfWork(engine)

        async def one() -> Any:
            async with unit_of_work.begin() as session:
                return await attempt(session)

        try:
            return list(
                await asyncio.gather(*(one() for _ in range(RACERS)), return_exceptions=True)
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _codes(results: list[Any]) -> list[str]:
    assert [r for r in results if isinstance(r, BaseException)] == [
        r for r in results if isinstance(r, BillfoldError)
    ], results
    return sorted(r.code if isinstance(r, BillfoldError) else "ok" for r in results)


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_concurrent_replacements_lose_no_update(database_url: str, versioned: bool) -> None:
    """Replacements of one schedule at once: with `version: 1` exactly one applies and the
    rest are refused; without a version each applies in turn and counts a version."""
    tenant_id, key = keys(database_url)
    with api(database_url) as client:
        created = create(client, key)
    ledger_tenant = uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:test")
    schedule_id = uuid.UUID(hex=created["id"].partition("_")[2])
    one_rule = FeeSchedule(rules=(FeeRule(name="all", tiers=(FeeTier(bps=7),)),))

    async def replace(session: Any) -> int:
        row = await service.replace_schedule(
            session,
            tenant_id=ledger_tenant,
            schedule_id=schedule_id,
            name="raced",
            schedule=one_rule,
            expected_version=1 if versioned else None,
            now_ns=time.time_ns(),
        )
        return row.version

    results = _race(database_url, replace)
    if not versioned:
        assert sorted(results) == list(range(2, RACERS + 2))  # no lost update
        return
    assert _codes(results) == ["fee_schedule_version_mismatch"] * (RACERS - 1) + ["ok"]
    assert [r for r in results if isinstance(r, int)] == [2]
    with api(database_url) as client:
        after = client.get(f"/v1/fee-schedules/{created['id']}", headers=auth(key)).json()
    assert (after["version"], after["name"]) == (2, "raced")


def test_concurrent_creations_of_one_scope_make_one_schedule(database_url: str) -> None:
    tenant_id, key = keys(database_url)
    ledger_tenant = uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:test")
    one_rule = FeeSchedule(rules=(FeeRule(name="all", tiers=(FeeTier(bps=7),)),))

    async def create_default(session: Any) -> int:
        row = await service.create_schedule(
            session,
            tenant_id=ledger_tenant,
            merchant_id=None,
            name="raced",
            schedule=one_rule,
            now_ns=time.time_ns(),
        )
        return row.version

    results = _race(database_url, create_default)
    assert _codes(results) == ["fee_schedule_exists"] * (RACERS - 1) + ["ok"]
    with api(database_url) as client:
        assert len(client.get("/v1/fee-schedules", headers=auth(key)).json()["items"]) == 1


# -- reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_schedule_reads_and_previews_never_wait_for_the_writer(
    isolated_database_url: str,
) -> None:
    """They read in deferred transactions: a long write elsewhere (SQLite has one writer)
    does not hold them up. Before, each began `BEGIN IMMEDIATE` and queued behind it."""
    _, key = keys(isolated_database_url)
    with api(isolated_database_url) as client:
        schedule = create(client, key)
        client.get("/v1/fee-schedules", headers=auth(key))  # the key's first use is written
        answers: list[int] = []

        def read() -> None:
            for response in (
                client.get("/v1/fee-schedules", headers=auth(key)),
                client.get(f"/v1/fee-schedules/{schedule['id']}", headers=auth(key)),
                client.post(
                    "/v1/fee-quotes",
                    json={"method": "card", "currency": "EUR", "amount": "10000"},
                    headers=auth(key),
                ),
            ):
                answers.append(response.status_code)

        done = done_while_locked(isolated_database_url, read, wait_s=10.0)
        assert done and answers == [200, 200, 200], answers
