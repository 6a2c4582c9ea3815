"""The generator: reproducible, time-ordered, labelled, and every fraud pattern shaped as
its name says."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.risk.simulator.generator import (
    DECLINED_CARDS,
    MONEY_KINDS,
    ActionKind,
    Pattern,
    Scenario,
    SimulatedAction,
    SimulationConfig,
    generate,
)

SMALL = SimulationConfig(seed=7, customers=40, merchants=6, hours=24, fraud_rate=0.05)


def _episodes(scenario: Scenario, pattern: Pattern) -> list[list[SimulatedAction]]:
    grouped: dict[int, list[SimulatedAction]] = defaultdict(list)
    for action in scenario.actions:
        if action.pattern is pattern and action.episode is not None:
            grouped[action.episode].append(action)
    return list(grouped.values())


def test_the_same_seed_gives_the_same_sequence() -> None:
    again = SimulationConfig(seed=7, customers=40, merchants=6, hours=24, fraud_rate=0.05)
    assert generate(SMALL) == generate(again)


def test_different_seeds_give_different_sequences() -> None:
    other = SimulationConfig(seed=8, customers=40, merchants=6, hours=24, fraud_rate=0.05)
    assert generate(SMALL).actions != generate(other).actions


def test_every_pattern_is_present_and_no_fraud_without_a_rate() -> None:
    assert generate(SMALL).patterns() == frozenset(Pattern)
    clean = generate(SimulationConfig(seed=7, customers=40, merchants=6, fraud_rate=0.0))
    assert not any(action.fraud for action in clean.actions)


def test_structuring_stays_just_below_the_threshold() -> None:
    scenario = generate(SMALL)
    threshold = SMALL.structuring_threshold_minor
    for episode in _episodes(scenario, Pattern.STRUCTURING):
        transfers = [a for a in episode if a.kind is ActionKind.P2P]
        assert len(transfers) >= 6
        assert all(threshold * 9 // 10 <= a.amount_minor < threshold for a in transfers)
        assert len({a.actor for a in episode}) == 1


def test_card_testing_is_a_burst_of_tiny_amounts_from_one_device_mostly_declined() -> None:
    for episode in _episodes(generate(SMALL), Pattern.CARD_TESTING):
        money = [a for a in episode if a.moves_money]
        assert len(money) >= 10
        assert all(a.amount_minor < 500 for a in money)
        assert len({(a.device, a.ip) for a in episode}) == 1
        assert money[-1].at_s - money[0].at_s <= 22 * 12  # seconds apart, not hours
        top_ups = [a for a in money if a.kind is ActionKind.TOP_UP]
        declined = [a for a in top_ups if a.instrument in DECLINED_CARDS]
        assert len(declined) * 2 >= len(top_ups)


def test_account_takeover_starts_with_failed_logins_and_a_new_device() -> None:
    scenario = generate(SMALL)
    for episode in _episodes(scenario, Pattern.ACCOUNT_TAKEOVER):
        kinds = [a.kind for a in episode]
        failures = kinds.index(ActionKind.SIGN_IN)
        assert failures >= 2 and set(kinds[:failures]) == {ActionKind.LOGIN_FAILED}
        assert kinds[failures + 1] is ActionKind.BIND_DEVICE
        victim = scenario.customers[episode[0].actor]
        assert {a.device for a in episode} != {victim.session}
        assert all(a.ip_country != victim.country for a in episode)
        transfers = [a for a in episode if a.kind is ActionKind.P2P]
        assert transfers and all(a.counterparty not in victim.friends for a in transfers)
        assert all(kinds.index(ActionKind.BIND_DEVICE) < episode.index(a) for a in transfers)


def test_a_mule_receives_from_several_victims_then_moves_it_on() -> None:
    scenario = generate(SMALL)
    for episode in _episodes(scenario, Pattern.MULE_PASS_THROUGH):
        *incoming, onward = episode
        mule = onward.actor
        assert scenario.customers[mule].fraudster
        assert len({a.actor for a in incoming}) >= 3
        assert all(a.kind is ActionKind.P2P and a.counterparty == mule for a in incoming)
        assert onward.kind in {ActionKind.WITHDRAWAL, ActionKind.P2P}
        assert onward.amount_minor <= sum(a.amount_minor for a in incoming)


def test_a_spending_spree_is_many_merchant_payments_within_an_hour_of_a_new_device() -> None:
    for episode in _episodes(generate(SMALL), Pattern.NEW_DEVICE_SPREE):
        assert [a.kind for a in episode[:2]] == [ActionKind.SIGN_IN, ActionKind.BIND_DEVICE]
        payments = episode[2:]
        assert len(payments) >= 6
        assert all(a.kind is ActionKind.MERCHANT_PAYMENT for a in payments)
        assert payments[-1].at_s - episode[1].at_s <= 3600


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    customers=st.integers(min_value=10, max_value=40),
    merchants=st.integers(min_value=1, max_value=8),
    hours=st.integers(min_value=1, max_value=30),
    fraud_rate=st.floats(min_value=0.0, max_value=0.5),
)
def test_generated_workloads_keep_their_invariants(
    seed: int, customers: int, merchants: int, hours: int, fraud_rate: float
) -> None:
    config = SimulationConfig(
        seed=seed, customers=customers, merchants=merchants, hours=hours, fraud_rate=fraud_rate
    )
    scenario = generate(config)
    actions = scenario.actions
    assert [a.index for a in actions] == list(range(len(actions)))
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(actions))
    for action in actions:
        assert action.fraud == (action.pattern is not None) == (action.episode is not None)
        assert 0 <= action.actor < customers
        if action.kind in MONEY_KINDS:
            assert action.amount_minor > 0
        else:
            assert action.amount_minor == 0
        if action.kind is ActionKind.MERCHANT_PAYMENT:
            assert action.counterparty is not None and 0 <= action.counterparty < merchants
        if action.kind in {ActionKind.P2P, ActionKind.MONEY_REQUEST}:
            assert action.counterparty is not None and action.counterparty != action.actor
    if fraud_rate > 0:
        assert scenario.patterns() == frozenset(Pattern)
