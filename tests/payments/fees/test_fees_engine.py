"""The fee engine: worked examples, precedence, tiers, rounding, and properties under hypothesis."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.payments.fees.engine import (
    BPS_MAX,
    FeeRule,
    FeeSchedule,
    FeeTier,
    InvalidFeeContext,
    InvalidFeeSchedule,
    compute_fee,
    match_rule,
    quote_fees,
    rule_specificity,
    schedule_from_json,
    schedule_to_json,
    select_tier,
    validate_schedule,
)
from billfold.payments.fees.types import FeeContext

TENANT = uuid.UUID(int=1)


def context(**fields: object) -> FeeContext:
    values: dict[str, object] = {
        "tenant_id": TENANT,
        "merchant_id": None,
        "method": "card",
        "currency": "EUR",
        "amount_minor": 10_000,
        "region": "DE",
        "monthly_volume_minor": 0,
    }
    values.update(fields)
    return FeeContext(**values)  # type: ignore[arg-type]


CARD_EU = FeeRule(
    name="card_eu",
    method="card",
    currency="EUR",
    regions=frozenset({"DE", "FR"}),
    tiers=(
        FeeTier(volume_from_minor=0, bps=140, fixed_minor=25, min_minor=50, max_minor=500),
        FeeTier(volume_from_minor=10_000_000, bps=120, fixed_minor=20, min_minor=50),
    ),
)
CARD_ANY = FeeRule(name="card", method="card", tiers=(FeeTier(bps=290),))
ANY_EUR = FeeRule(name="eur", currency="EUR", tiers=(FeeTier(bps=100, fixed_minor=10),))
CATCH_ALL = FeeRule(name="all", tiers=(FeeTier(bps=50),))
SCHEDULE = FeeSchedule(rules=(CATCH_ALL, ANY_EUR, CARD_ANY, CARD_EU))


def test_the_readme_worked_example() -> None:
    # 100.00 EUR by card from Germany, first tier: 1.40% = 1.40, + 0.25 = 1.65 EUR.
    [line] = quote_fees(context=context(), merchant_schedule=None, tenant_schedule=SCHEDULE).lines
    assert (line.rule, line.amount_minor, line.currency) == ("card_eu_tier_1", 165, "EUR")
    assert line.description == (
        "1.40% + 0.25 EUR, min 0.50 EUR, max 5.00 EUR (monthly volume from 0.00 EUR)"
    )


def test_the_most_specific_matching_rule_wins() -> None:
    assert match_rule(SCHEDULE, context()) is CARD_EU
    assert match_rule(SCHEDULE, context(region="US")) is CARD_ANY  # method beats currency
    assert match_rule(SCHEDULE, context(region=None)) is CARD_ANY
    assert match_rule(SCHEDULE, context(method="p2p")) is ANY_EUR
    assert match_rule(SCHEDULE, context(method="p2p", currency="USD")) is CATCH_ALL


def test_a_merchant_schedule_overrides_and_falls_back_to_the_tenant_default() -> None:
    merchant = FeeSchedule(
        rules=(FeeRule(name="vip_card", method="card", tiers=(FeeTier(bps=10),)),)
    )
    [line] = quote_fees(
        context=context(), merchant_schedule=merchant, tenant_schedule=SCHEDULE
    ).lines
    assert (line.rule, line.amount_minor, line.description) == ("vip_card", 10, "0.10%")
    [fallback] = quote_fees(
        context=context(method="p2p"), merchant_schedule=merchant, tenant_schedule=SCHEDULE
    ).lines
    assert (fallback.rule, fallback.amount_minor) == ("eur", 110)


def test_no_schedule_or_no_matching_rule_or_a_zero_fee_charges_nothing() -> None:
    assert quote_fees(context=context(), merchant_schedule=None, tenant_schedule=None).lines == ()
    only_usd = FeeSchedule(rules=(FeeRule(name="usd", currency="USD", tiers=(FeeTier(bps=9),)),))
    assert (
        quote_fees(context=context(), merchant_schedule=None, tenant_schedule=only_usd).lines == ()
    )
    free = FeeSchedule(rules=(FeeRule(name="free", tiers=(FeeTier(bps=0),)),))
    assert quote_fees(context=context(), merchant_schedule=None, tenant_schedule=free).lines == ()


def test_tier_boundaries_are_exact() -> None:
    assert select_tier(CARD_EU, 9_999_999)[0] == 0
    assert select_tier(CARD_EU, 10_000_000)[0] == 1
    [line] = quote_fees(
        context=context(monthly_volume_minor=10_000_000),
        merchant_schedule=None,
        tenant_schedule=SCHEDULE,
    ).lines
    assert (line.rule, line.amount_minor) == ("card_eu_tier_2", 140)


def test_rounding_is_half_up_on_minor_units() -> None:
    tier = FeeTier(bps=150)  # 1.5%
    assert compute_fee(tier, 33) == 0  # 0.495 -> 0
    assert compute_fee(tier, 34) == 1  # 0.51 -> 1
    assert compute_fee(FeeTier(bps=5000), 1) == 1  # 0.5 -> 1 (half up)
    assert compute_fee(FeeTier(bps=5000), 3) == 2  # 1.5 -> 2
    assert compute_fee(FeeTier(bps=1), 10**30) == 10**26  # exact far beyond float precision


def test_min_and_max_clamp() -> None:
    tier = FeeTier(bps=100, min_minor=50, max_minor=200)
    assert compute_fee(tier, 0) == 50
    assert compute_fee(tier, 10_000) == 100
    assert compute_fee(tier, 1_000_000) == 200


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (FeeSchedule(rules=()), "1 to"),
        (FeeSchedule(rules=(FeeRule(name="x", tiers=()),)), "tiers"),
        (FeeSchedule(rules=(FeeRule(name="Bad Name", tiers=(FeeTier(),)),)), "name"),
        (FeeSchedule(rules=(FeeRule(name="x", tiers=(FeeTier(bps=10_001),)),)), "bps"),
        (FeeSchedule(rules=(FeeRule(name="x", tiers=(FeeTier(bps=-1),)),)), "bps"),
        (FeeSchedule(rules=(FeeRule(name="x", tiers=(FeeTier(fixed_minor=5),)),)), "currency"),
        (
            FeeSchedule(
                rules=(
                    FeeRule(name="x", currency="EUR", tiers=(FeeTier(min_minor=9, max_minor=1),)),
                )
            ),
            "min_minor",
        ),
        (
            FeeSchedule(rules=(FeeRule(name="x", tiers=(FeeTier(volume_from_minor=5),)),)),
            "volume 0",
        ),
        (
            FeeSchedule(
                rules=(
                    FeeRule(
                        name="x", currency="EUR", tiers=(FeeTier(), FeeTier(volume_from_minor=0))
                    ),
                )
            ),
            "increasing",
        ),
        (FeeSchedule(rules=(FeeRule(name="x", currency="ZZZ", tiers=(FeeTier(),)),)), "currency"),
        (
            FeeSchedule(rules=(FeeRule(name="x", regions=frozenset({"de"}), tiers=(FeeTier(),)),)),
            "region",
        ),
        (
            FeeSchedule(rules=(FeeRule(name="x", regions=frozenset(), tiers=(FeeTier(),)),)),
            "regions",
        ),
        (FeeSchedule(rules=(FeeRule(name="x", method="Card!", tiers=(FeeTier(),)),)), "method"),
        (FeeSchedule(rules=(CARD_ANY, CARD_ANY)), "unique"),
        (
            FeeSchedule(
                rules=(
                    CARD_EU,
                    FeeRule(
                        name="fr",
                        method="card",
                        currency="EUR",
                        regions=frozenset({"FR"}),
                        tiers=(FeeTier(),),
                    ),
                )
            ),
            "same criteria",
        ),
    ],
)
def test_malformed_schedules_are_refused(schedule: FeeSchedule, message: str) -> None:
    with pytest.raises(InvalidFeeSchedule, match=message):
        validate_schedule(schedule)


def test_malformed_contexts_are_refused() -> None:
    for bad in (
        context(amount_minor=-1),
        context(amount_minor=1.5),
        context(amount_minor=True),
        context(monthly_volume_minor=-1),
        context(currency="ZZZ"),
        context(amount_minor=2**127),
    ):
        with pytest.raises(InvalidFeeContext):
            quote_fees(context=bad, merchant_schedule=None, tenant_schedule=SCHEDULE)


def test_the_stored_json_round_trips() -> None:
    validate_schedule(SCHEDULE)
    assert schedule_from_json(schedule_to_json(SCHEDULE)) == SCHEDULE


# -- properties

amounts = st.integers(min_value=0, max_value=10**20)
optional_amounts = st.none() | st.integers(min_value=0, max_value=10**6)


@st.composite
def tiers(draw: st.DrawFn) -> FeeTier:
    low = draw(optional_amounts)
    high = draw(optional_amounts)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return FeeTier(
        bps=draw(st.integers(min_value=0, max_value=BPS_MAX)),
        fixed_minor=draw(st.integers(min_value=0, max_value=10**6)),
        min_minor=low,
        max_minor=high,
    )


@settings(deadline=None)
@given(tier=tiers(), amount=amounts)
def test_a_fee_is_a_non_negative_integer_within_min_and_max(tier: FeeTier, amount: int) -> None:
    fee = compute_fee(tier, amount)
    assert type(fee) is int
    assert fee >= 0
    if tier.min_minor is not None:
        assert fee >= tier.min_minor
    if tier.max_minor is not None:
        assert fee <= tier.max_minor


@settings(deadline=None)
@given(tier=tiers(), amount=amounts, more=amounts)
def test_a_fee_is_monotone_in_the_amount_within_a_tier(
    tier: FeeTier, amount: int, more: int
) -> None:
    assert compute_fee(tier, amount) <= compute_fee(tier, amount + more)


@settings(deadline=None)
@given(bps=st.integers(min_value=0, max_value=BPS_MAX), amount=amounts)
def test_the_percentage_is_exactly_half_up(bps: int, amount: int) -> None:
    fee = compute_fee(FeeTier(bps=bps), amount)
    # |fee - amount*bps/10000| <= 1/2, ties upwards: 2*(fee*10000 - amount*bps) in (-10000, 10000]
    twice_error = 2 * (fee * BPS_MAX - amount * bps)
    assert -BPS_MAX < twice_error <= BPS_MAX


@settings(deadline=None)
@given(
    starts=st.lists(
        st.integers(min_value=1, max_value=10**12), min_size=0, max_size=5, unique=True
    ),
    volume=st.integers(min_value=0, max_value=10**12),
)
def test_the_tier_is_the_last_starting_at_or_below_the_volume(
    starts: list[int], volume: int
) -> None:
    bounds = [0, *sorted(starts)]
    rule = FeeRule(
        name="tiered",
        currency="EUR",
        tiers=tuple(FeeTier(volume_from_minor=b, bps=i) for i, b in enumerate(bounds)),
    )
    validate_schedule(FeeSchedule(rules=(rule,)))
    index, tier = select_tier(rule, volume)
    assert tier.volume_from_minor <= volume
    assert index == len(bounds) - 1 or bounds[index + 1] > volume
    for bound in bounds:  # exactly at a boundary: that tier
        assert select_tier(rule, bound)[1].volume_from_minor == bound


methods = st.sampled_from(["card", "p2p", "payout"])
currencies = st.sampled_from(["EUR", "USD", "JPY"])
regions = st.sampled_from(["DE", "FR", "US"])


@settings(deadline=None, max_examples=50)
@given(method=methods, currency=currencies, region=st.none() | regions, amount=amounts)
def test_the_chosen_rule_matches_and_no_matching_rule_is_more_specific(
    method: str, currency: str, region: str | None, amount: int
) -> None:
    movement = context(method=method, currency=currency, region=region, amount_minor=amount)
    rule = match_rule(SCHEDULE, movement)
    assert rule is not None  # the catch-all
    assert match_rule(FeeSchedule(rules=(rule,)), movement) is rule
    for other in SCHEDULE.rules:
        if match_rule(FeeSchedule(rules=(other,)), movement) is other:
            assert rule_specificity(other) <= rule_specificity(rule)
    quote = quote_fees(context=movement, merchant_schedule=None, tenant_schedule=SCHEDULE)
    assert all(line.currency == currency and line.amount_minor > 0 for line in quote.lines)
    assert quote.total_minor == sum(line.amount_minor for line in quote.lines)


def test_the_kept_part_is_the_fixed_part_and_what_a_minimum_added() -> None:
    # 100.00 EUR: 1.40% = 140 refundable pro rata, the 0.25 kept.
    [line] = quote_fees(context=context(), merchant_schedule=None, tenant_schedule=SCHEDULE).lines
    assert (line.amount_minor, line.fixed_minor) == (165, 25)
    # 1.00 EUR: 1 + 25 = 26, raised to the 50 minimum: only the 1 is proportional.
    [small] = quote_fees(
        context=context(amount_minor=100), merchant_schedule=None, tenant_schedule=SCHEDULE
    ).lines
    assert (small.amount_minor, small.fixed_minor) == (50, 49)
    # 1,000.00 EUR: capped at 500, all of it proportional.
    [large] = quote_fees(
        context=context(amount_minor=100_000), merchant_schedule=None, tenant_schedule=SCHEDULE
    ).lines
    assert (large.amount_minor, large.fixed_minor) == (500, 0)


@settings(deadline=None)
@given(tier=tiers(), amount=amounts)
def test_the_kept_part_is_within_the_fee_and_the_rest_within_the_percentage(
    tier: FeeTier, amount: int
) -> None:
    rule = FeeRule(name="r", currency="EUR", tiers=(tier,))
    quote = quote_fees(
        context=context(amount_minor=amount),
        merchant_schedule=None,
        tenant_schedule=FeeSchedule(rules=(rule,)),
    )
    for line in quote.lines:
        assert 0 <= line.fixed_minor <= line.amount_minor
        percentage = (amount * tier.bps + BPS_MAX // 2) // BPS_MAX
        assert line.amount_minor - line.fixed_minor <= percentage
