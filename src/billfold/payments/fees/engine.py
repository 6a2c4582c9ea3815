"""The fee engine: pure functions from a schedule and a movement to the fee lines it pays.

A **schedule** is a list of **rules**. A rule matches a movement when each of its criteria
that is set equals the movement's: `method`, `currency`, and `regions` (the movement's
region is one of them). Unset criteria match anything.

**Precedence.** Of the matching rules the most specific wins, scored method 4 + currency 2 +
region 1 (so a rule naming the method beats any rule that does not; between two that both
name it, the one naming the currency wins; then the one naming the region). Two rules with
the same criteria (or overlapping regions with the same method and currency) are refused
when the schedule is saved, so there is never a tie. A merchant's schedule is searched
first; when none of its rules matches, the tenant's default schedule is searched.

**Tiers.** A rule has 1 to `TIERS_MAX` tiers, each starting at `volume_from_minor`
(the first at 0, strictly increasing). The tier used is the last whose start is at most the
movement's `monthly_volume_minor`: a volume exactly at a boundary is in the higher tier.
Thresholds are minor units, so a rule with more than one tier names its currency. A
tiered rule's fee lines are named `<name>_tier_<n>`: that name fits `LINE_NAME_LENGTH_MAX`
and no two rules of a schedule name their lines alike.

**Amount.** `percentage = amount_minor * bps / 10 000`, rounded half up to a whole minor
unit (exactly, in integers); `fee = percentage + fixed_minor`, then raised to `min_minor`
and lowered to `max_minor` when they are set. A fee of 0 produces no line.

**Currency.** A rule's fixed, minimum and maximum are minor units of the rule's currency,
so a rule that has any of them must name its currency; a rule without a currency charges
basis points only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from billfold.kit.errors import ValidationFailed, invariant
from billfold.kit.money import Asset, AssetRegistry, Money, default_registry
from billfold.payments.fees.types import FeeContext, FeeLine, FeeQuote

__all__ = [
    "BPS_MAX",
    "FEE_AMOUNT_MAX",
    "LINE_NAME_LENGTH_MAX",
    "RULES_MAX",
    "RULE_NAME_LENGTH_MAX",
    "TIERS_MAX",
    "FeeRule",
    "FeeSchedule",
    "FeeTier",
    "InvalidFeeContext",
    "InvalidFeeSchedule",
    "compute_fee",
    "describe_tier",
    "line_name",
    "match_rule",
    "quote_fees",
    "rule_specificity",
    "schedule_from_json",
    "schedule_to_document",
    "schedule_to_json",
    "select_tier",
    "validate_schedule",
]

BPS_MAX: Final = 10_000
"""100%: no rule takes more than the whole amount as its percentage part."""
FEE_AMOUNT_MAX: Final = 10**18
"""Largest fixed, minimum, maximum or volume threshold in minor units."""
RULES_MAX: Final = 200
TIERS_MAX: Final = 20
REGIONS_MAX: Final = 300
RULE_NAME_LENGTH_MAX: Final = 64
LINE_NAME_LENGTH_MAX: Final = 64
"""Longest fee line name (`FeeLine.rule`: the rule's name, `_tier_<n>` for tiered rules);
payments store it in 64 characters."""
CONTEXT_AMOUNT_MAX: Final = 2**127 - 1

_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}", re.ASCII)
_METHOD = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_REGION = re.compile(r"[A-Z]{2}", re.ASCII)
_CURRENCY = re.compile(r"[A-Z0-9]{2,12}", re.ASCII)


class InvalidFeeSchedule(ValidationFailed):
    code = "invalid_fee_schedule"
    title = "Invalid fee schedule"


class InvalidFeeContext(ValidationFailed):
    code = "invalid_fee_context"
    title = "Invalid movement to price"


@dataclass(frozen=True, slots=True)
class FeeTier:
    """Pricing from `volume_from_minor` of monthly volume upwards."""

    volume_from_minor: int = 0
    bps: int = 0
    fixed_minor: int = 0
    min_minor: int | None = None
    max_minor: int | None = None


@dataclass(frozen=True, slots=True)
class FeeRule:
    name: str
    tiers: tuple[FeeTier, ...]
    method: str | None = None
    currency: str | None = None
    regions: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    rules: tuple[FeeRule, ...]


def _fail(message: str, **where: str | int) -> InvalidFeeSchedule:
    return InvalidFeeSchedule(message, **where)


def _check_amount(value: int | None, what: str, rule: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not 0 <= value <= FEE_AMOUNT_MAX:
        raise _fail(f"{what} is an integer from 0 to {FEE_AMOUNT_MAX} minor units.", rule=rule)


def line_name(rule: FeeRule, index: int) -> str:
    """The name of the fee line tier `index` of `rule` charges: the rule's name, or
    `<name>_tier_<n>` (from 1) when the rule has more than one tier."""
    return rule.name if len(rule.tiers) == 1 else f"{rule.name}_tier_{index + 1}"


def _validate_tiers(rule: FeeRule) -> None:
    if not 1 <= len(rule.tiers) <= TIERS_MAX:
        raise _fail(f"A rule has 1 to {TIERS_MAX} tiers.", rule=rule.name)
    if len(rule.tiers) > 1 and rule.currency is None:
        # Volume thresholds are minor units too: 10 000 000 is 100 000.00 EUR but
        # 10 000 000 JPY or 10 000.000 KWD, so a tiered rule names its currency.
        raise _fail("A rule with more than one tier must name its currency.", rule=rule.name)
    if len(line_name(rule, len(rule.tiers) - 1)) > LINE_NAME_LENGTH_MAX:
        raise _fail(
            f"A tiered rule's name leaves room for '_tier_<n>' within {LINE_NAME_LENGTH_MAX}"
            " characters (its fee lines are named <name>_tier_<n>).",
            rule=rule.name,
        )
    if rule.tiers[0].volume_from_minor != 0:
        raise _fail("The first tier starts at volume 0.", rule=rule.name)
    previous = -1
    for tier in rule.tiers:
        _check_amount(tier.volume_from_minor, "volume_from_minor", rule.name, optional=False)
        if tier.volume_from_minor <= previous:
            raise _fail("Tiers start at strictly increasing volumes.", rule=rule.name)
        previous = tier.volume_from_minor
        if type(tier.bps) is not int or not 0 <= tier.bps <= BPS_MAX:
            raise _fail(f"bps is an integer from 0 to {BPS_MAX}.", rule=rule.name)
        _check_amount(tier.fixed_minor, "fixed_minor", rule.name, optional=False)
        for value, what in ((tier.min_minor, "min_minor"), (tier.max_minor, "max_minor")):
            _check_amount(value, what, rule.name)
        if (
            tier.min_minor is not None
            and tier.max_minor is not None
            and tier.min_minor > tier.max_minor
        ):
            raise _fail("min_minor must not exceed max_minor.", rule=rule.name)
        has_amounts = tier.fixed_minor or tier.min_minor is not None or tier.max_minor is not None
        if has_amounts and rule.currency is None:
            raise _fail(
                "A rule with a fixed part, a minimum or a maximum must name its currency.",
                rule=rule.name,
            )


def _validate_rule(rule: FeeRule, registry: AssetRegistry) -> None:
    if not isinstance(rule.name, str) or not _RULE_NAME.fullmatch(rule.name):
        raise _fail("A rule name is 1-64 of a-z, 0-9, '_', '.', '-', starting alphanumeric.")
    if rule.method is not None and not _METHOD.fullmatch(rule.method):
        raise _fail("A method is 1-32 of a-z, 0-9 and '_'.", rule=rule.name)
    if rule.currency is not None and (
        not _CURRENCY.fullmatch(rule.currency) or rule.currency not in registry
    ):
        raise _fail("The rule's currency is not a known asset code.", rule=rule.name)
    if rule.regions is not None:
        if not 1 <= len(rule.regions) <= REGIONS_MAX:
            raise _fail(f"regions lists 1 to {REGIONS_MAX} countries.", rule=rule.name)
        if not all(_REGION.fullmatch(region) for region in rule.regions):
            raise _fail("A region is an ISO 3166-1 alpha-2 code (two A-Z).", rule=rule.name)
    _validate_tiers(rule)


def validate_schedule(schedule: FeeSchedule, registry: AssetRegistry | None = None) -> None:
    """Raise :class:`InvalidFeeSchedule` unless every rule is well formed and no two rules
    could ever tie (same method and currency, and the same or overlapping regions)."""
    registry = registry or _REGISTRY
    if not 1 <= len(schedule.rules) <= RULES_MAX:
        raise _fail(f"A schedule has 1 to {RULES_MAX} rules.")
    names: set[str] = set()
    line_names: set[str] = set()
    claimed: set[tuple[str | None, str | None, str | None]] = set()
    for rule in schedule.rules:
        _validate_rule(rule, registry)
        if rule.name in names:
            raise _fail("Rule names are unique within a schedule.", rule=rule.name)
        names.add(rule.name)
        lines = {line_name(rule, index) for index in range(len(rule.tiers))}
        if lines & line_names:
            raise _fail(
                "Two rules would name their fee lines alike (a tiered rule's lines are"
                " <name>_tier_<n>).",
                rule=rule.name,
            )
        line_names |= lines
        regions: tuple[str | None, ...] = (
            (None,) if rule.regions is None else tuple(sorted(rule.regions))
        )
        for region in regions:
            key = (rule.method, rule.currency, region)
            if key in claimed:
                raise _fail(
                    "Two rules have the same criteria; one would never apply.", rule=rule.name
                )
            claimed.add(key)


def rule_specificity(rule: FeeRule) -> int:
    """Method 4 + currency 2 + region 1: the higher wins among matching rules."""
    return (
        (4 if rule.method is not None else 0)
        + (2 if rule.currency is not None else 0)
        + (1 if rule.regions is not None else 0)
    )


def _matches(rule: FeeRule, context: FeeContext) -> bool:
    if rule.method is not None and rule.method != context.method:
        return False
    if rule.currency is not None and rule.currency != context.currency:
        return False
    return rule.regions is None or (context.region is not None and context.region in rule.regions)


def match_rule(schedule: FeeSchedule, context: FeeContext) -> FeeRule | None:
    """The most specific rule of `schedule` that matches `context`, if any."""
    best: FeeRule | None = None
    for rule in schedule.rules:
        if _matches(rule, context) and (
            best is None or rule_specificity(rule) > rule_specificity(best)
        ):
            best = rule
    return best


def select_tier(rule: FeeRule, monthly_volume_minor: int) -> tuple[int, FeeTier]:
    """The index and tier for a monthly volume: the last tier starting at or below it."""
    invariant(rule.tiers[0].volume_from_minor == 0, "the first tier starts at 0")
    chosen = 0
    for index, tier in enumerate(rule.tiers):
        if tier.volume_from_minor <= monthly_volume_minor:
            chosen = index
    return chosen, rule.tiers[chosen]


def compute_fee(tier: FeeTier, amount_minor: int) -> int:
    """The fee for `amount_minor` under `tier`, exact: bps part half up, plus fixed, then
    clamped to [min, max]. Never negative."""
    invariant(type(amount_minor) is int and amount_minor >= 0, "fee amounts are non-negative")
    # Half up: floor((a * bps + 5000) / 10000) for non-negative integers.
    fee = _percentage(tier, amount_minor) + tier.fixed_minor
    if tier.min_minor is not None:
        fee = max(fee, tier.min_minor)
    if tier.max_minor is not None:
        fee = min(fee, tier.max_minor)
    invariant(fee >= 0, "a fee is never negative")
    return fee


def _percent(bps: int) -> str:
    whole, hundredths = divmod(bps, 100)
    return f"{whole}.{hundredths:02d}%"


def _percentage(tier: FeeTier, amount_minor: int) -> int:
    """The proportional part: `amount_minor * bps / 10 000`, rounded half up."""
    return (amount_minor * tier.bps + BPS_MAX // 2) // BPS_MAX


def describe_tier(tier: FeeTier, asset: Asset, *, tier_count: int = 1) -> str:
    """Human-readable pricing: `1.40% + 0.25 EUR, min 0.50 EUR, max 5.00 EUR`."""

    def money(amount: int) -> str:
        return f"{Money(amount=amount, asset=asset).format()} {asset.code}"

    parts = [_percent(tier.bps)]
    if tier.fixed_minor:
        parts[0] += f" + {money(tier.fixed_minor)}"
    if tier.min_minor is not None:
        parts.append(f"min {money(tier.min_minor)}")
    if tier.max_minor is not None:
        parts.append(f"max {money(tier.max_minor)}")
    text = ", ".join(parts)
    if tier_count > 1:
        text += f" (monthly volume from {money(tier.volume_from_minor)})"
    return text


def _check_context(context: FeeContext, registry: AssetRegistry) -> Asset:
    if type(context.amount_minor) is not int or not 0 <= context.amount_minor <= CONTEXT_AMOUNT_MAX:
        # The ledger's bound: the preview's `amount` pattern admits 39 digits, beyond it.
        raise InvalidFeeContext(f"The amount is an integer from 0 to {CONTEXT_AMOUNT_MAX}.")
    if type(context.monthly_volume_minor) is not int or context.monthly_volume_minor < 0:
        raise InvalidFeeContext("monthly_volume_minor is a non-negative integer.")
    if not isinstance(context.currency, str) or context.currency not in registry:
        raise InvalidFeeContext("currency is not a known asset code.")
    return registry.get(context.currency)


def quote_fees(
    *,
    context: FeeContext,
    merchant_schedule: FeeSchedule | None,
    tenant_schedule: FeeSchedule | None,
    registry: AssetRegistry | None = None,
) -> FeeQuote:
    """The fee lines for `context`: the merchant's matching rule, else the tenant's."""
    registry = registry or _REGISTRY
    asset = _check_context(context, registry)
    rule = None
    for schedule in (merchant_schedule, tenant_schedule):
        if schedule is not None:
            rule = match_rule(schedule, context)
            if rule is not None:
                break
    if rule is None:
        return FeeQuote()
    index, tier = select_tier(rule, context.monthly_volume_minor)
    fee = compute_fee(tier, context.amount_minor)
    if fee == 0:
        return FeeQuote()
    invariant(rule.currency in (None, context.currency), "a matched rule's currency matches")
    name = line_name(rule, index)
    description = describe_tier(tier, asset, tier_count=len(rule.tiers))
    return FeeQuote(
        lines=(
            FeeLine(
                rule=name,
                description=description,
                amount_minor=fee,
                currency=context.currency,
                fixed_minor=fee - min(fee, _percentage(tier, context.amount_minor)),
            ),
        )
    )


def schedule_to_document(schedule: FeeSchedule) -> list[dict[str, object]]:
    """The JSON-ready form stored and served: one object per rule, regions sorted."""
    return [
        {
            "name": rule.name,
            "method": rule.method,
            "currency": rule.currency,
            "regions": None if rule.regions is None else sorted(rule.regions),
            "tiers": [
                {
                    "volume_from_minor": tier.volume_from_minor,
                    "bps": tier.bps,
                    "fixed_minor": tier.fixed_minor,
                    "min_minor": tier.min_minor,
                    "max_minor": tier.max_minor,
                }
                for tier in rule.tiers
            ],
        }
        for rule in schedule.rules
    ]


def schedule_to_json(schedule: FeeSchedule) -> str:
    return json.dumps(schedule_to_document(schedule), separators=(",", ":"), sort_keys=True)


def schedule_from_json(text: str) -> FeeSchedule:
    """Read what :func:`schedule_to_json` wrote (stored rows only; never client input)."""
    rules: list[FeeRule] = []
    for item in json.loads(text):
        regions = item["regions"]
        rules.append(
            FeeRule(
                name=item["name"],
                method=item["method"],
                currency=item["currency"],
                regions=None if regions is None else frozenset(regions),
                tiers=tuple(FeeTier(**tier) for tier in item["tiers"]),
            )
        )
    return FeeSchedule(rules=tuple(rules))


_REGISTRY: Final = default_registry()
