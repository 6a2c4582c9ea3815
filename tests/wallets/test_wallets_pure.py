"""Pure parts of wallets: deterministic account ids, the chart, limits by tier; and the
payment state machines."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from billfold.fx.positions import legacy_position_account_id, position_account, position_account_id
from billfold.ledger.types import AccountFlags
from billfold.payments.states import TERMINAL, TRANSITIONS, Kind, State, can_transition
from billfold.wallets.accounts import (
    PROVIDER_NAMES,
    AccountCode,
    OwnerKind,
    chart_of_accounts,
    system_account_id,
    wallet_account,
)
from billfold.wallets.limits import (
    TIER_LIMITS,
    WINDOWS,
    check_limits,
    effective_limits,
    limits_for,
)

TENANT = uuid.uuid4()


def test_the_chart_has_a_clearing_account_per_provider_and_the_system_roles() -> None:
    names = [entry.name for entry in chart_of_accounts(TENANT, "USD")]
    assert names == [
        *(f"clearing:{provider}" for provider in PROVIDER_NAMES),
        "fee_revenue",
        "fx_position",
        "suspense",
        "chargeback_losses",
    ]
    again = [entry.account.id for entry in chart_of_accounts(TENANT, "USD")]
    assert again == [entry.account.id for entry in chart_of_accounts(TENANT, "USD")]
    euros = {entry.account.id for entry in chart_of_accounts(TENANT, "EUR")}
    assert euros.isdisjoint(again)
    other = {entry.account.id for entry in chart_of_accounts(uuid.uuid4(), "USD")}
    assert other.isdisjoint(again)


@given(currency=st.sampled_from(["USD", "EUR", "JPY", "GBP"]))
def test_the_charts_fx_position_is_the_account_fx_conversions_post_through(
    currency: str,
) -> None:
    """One account, however it is named: the chart's entry is fx's position account, with
    the id every system account of the chart has (so a chart opened before conversions
    used it is the same account), code 3002, and no balance limit."""
    [entry] = [e for e in chart_of_accounts(TENANT, currency) if e.name == "fx_position"]
    assert entry.account == position_account(tenant_id=TENANT, currency=currency)
    assert entry.account.id == system_account_id(TENANT, name="fx_position", currency=currency)
    assert entry.account.id == position_account_id(tenant_id=TENANT, currency=currency)
    assert entry.account.id != legacy_position_account_id(tenant_id=TENANT, currency=currency)
    assert (entry.account.code, entry.account.flags) == (AccountCode.FX_POSITION, 0)
    assert (entry.account.ledger, entry.account.owner_ref) == (currency, "system:fx_position")
    assert AccountCode.FX_POSITION == 3002


def test_wallet_accounts_are_deterministic_and_refuse_overdraft() -> None:
    owner = uuid.uuid4()
    account = wallet_account(TENANT, owner_kind=OwnerKind.USER, owner_id=owner, currency="USD")
    same = wallet_account(TENANT, owner_kind=OwnerKind.USER, owner_id=owner, currency="USD")
    assert account == same
    assert account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    merchant = wallet_account(TENANT, owner_kind=OwnerKind.MERCHANT, owner_id=owner, currency="USD")
    assert merchant.id != account.id


@given(
    tier=st.integers(min_value=0, max_value=3),
    exponent=st.integers(min_value=0, max_value=18),
    amount=st.integers(min_value=1, max_value=10**30),
    daily=st.integers(min_value=0, max_value=10**30),
    monthly=st.integers(min_value=0, max_value=10**30),
    overrides=st.dictionaries(
        st.sampled_from(WINDOWS), st.integers(min_value=1, max_value=2**63 - 1)
    ),
)
def test_an_override_raises_only_the_windows_it_names_and_never_lowers_one(
    tier: int,
    exponent: int,
    amount: int,
    daily: int,
    monthly: int,
    overrides: dict[str, int],
) -> None:
    tier_figures = dict(zip(WINDOWS, limits_for(tier, exponent), strict=True))
    limits = effective_limits(tier=tier, exponent=exponent, overrides=overrides)
    for limit in limits:
        expected = max(tier_figures[limit.window], overrides.get(limit.window, 0))
        assert limit.limit_minor == expected >= limit.tier_minor
        assert limit.override_minor == overrides.get(limit.window)
        assert limit.source == ("override" if expected > limit.tier_minor else "tier")
    in_force = {limit.window: limit.limit_minor for limit in limits}
    breach = check_limits(
        tier=tier,
        exponent=exponent,
        amount_minor=amount,
        daily_used_minor=daily,
        monthly_used_minor=monthly,
        overrides=overrides,
    )
    fits = (
        amount <= in_force["per_transaction"]
        and daily + amount <= in_force["daily"]
        and monthly + amount <= in_force["monthly"]
    )
    assert (breach is None) == fits
    without = check_limits(
        tier=tier,
        exponent=exponent,
        amount_minor=amount,
        daily_used_minor=daily,
        monthly_used_minor=monthly,
    )
    assert breach is None or without is not None  # what passes without overrides passes with


def test_higher_tiers_allow_more() -> None:
    limits = [TIER_LIMITS[tier] for tier in range(4)]
    assert all(a.daily_units < b.daily_units for a, b in itertools.pairwise(limits))


@given(kind=st.sampled_from(Kind), start=st.sampled_from(State), end=st.sampled_from(State))
def test_terminal_states_have_no_way_out(kind: Kind, start: State, end: State) -> None:
    if start in TERMINAL:
        assert not can_transition(kind, start, end)
    assert can_transition(kind, start, end) == (end in TRANSITIONS[kind].get(start, ()))
