"""The fee API's request and response models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from billfold.kit.ids import format_id, parse_id
from billfold.ledger.schemas import StorableText
from billfold.payments.fees.engine import (
    BPS_MAX,
    FEE_AMOUNT_MAX,
    RULE_NAME_LENGTH_MAX,
    RULES_MAX,
    TIERS_MAX,
    FeeRule,
    FeeSchedule,
    FeeTier,
    schedule_to_document,
)
from billfold.payments.fees.models import SCHEDULE_NAME_LENGTH_MAX, FeeScheduleRow
from billfold.payments.fees.service import schedule_of
from billfold.payments.fees.types import FeeQuote

__all__ = [
    "MERCHANT_ID_PREFIX",
    "SCHEDULE_ID_PREFIX",
    "FeeQuoteRequest",
    "FeeQuoteResponse",
    "FeeRuleBody",
    "FeeScheduleCreateRequest",
    "FeeSchedulePage",
    "FeeScheduleReplaceRequest",
    "FeeScheduleResponse",
    "FeeTierBody",
]

SCHEDULE_ID_PREFIX = "fsc"
MERCHANT_ID_PREFIX = "mer"

Minor = Annotated[int, Field(strict=True, ge=0, le=FEE_AMOUNT_MAX)]
AmountText = Annotated[
    str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,38})$"), Field(description="minor units")
]
Code = Annotated[str, StringConstraints(min_length=2, max_length=12, pattern=r"^[A-Z0-9]+$")]
MerchantId = Annotated[str, StringConstraints(max_length=40), Field(examples=["mer_0190…"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeeTierBody(_Body):
    volume_from_minor: Minor = 0
    bps: Annotated[int, Field(strict=True, ge=0, le=BPS_MAX)] = 0
    fixed_minor: Minor = 0
    min_minor: Minor | None = None
    max_minor: Minor | None = None

    def to_tier(self) -> FeeTier:
        return FeeTier(
            volume_from_minor=self.volume_from_minor,
            bps=self.bps,
            fixed_minor=self.fixed_minor,
            min_minor=self.min_minor,
            max_minor=self.max_minor,
        )


class FeeRuleBody(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=RULE_NAME_LENGTH_MAX)]
    method: Annotated[str, StringConstraints(max_length=32)] | None = None
    currency: Code | None = None
    regions: (
        Annotated[list[Annotated[str, StringConstraints(max_length=2)]], Field(max_length=300)]
        | None
    ) = None
    tiers: Annotated[list[FeeTierBody], Field(min_length=1, max_length=TIERS_MAX)]

    def to_rule(self) -> FeeRule:
        return FeeRule(
            name=self.name,
            method=self.method,
            currency=self.currency,
            regions=None if self.regions is None else frozenset(self.regions),
            tiers=tuple(tier.to_tier() for tier in self.tiers),
        )


Rules = Annotated[list[FeeRuleBody], Field(min_length=1, max_length=RULES_MAX)]
Name = Annotated[StorableText, StringConstraints(min_length=1, max_length=SCHEDULE_NAME_LENGTH_MAX)]


def _schedule(rules: list[FeeRuleBody]) -> FeeSchedule:
    return FeeSchedule(rules=tuple(rule.to_rule() for rule in rules))


class FeeScheduleCreateRequest(_Body):
    merchant_id: MerchantId | None = None
    """`mer_<hex>`; absent for the tenant's default schedule."""
    name: Name
    rules: Rules

    def merchant_uuid(self) -> uuid.UUID | None:
        return None if self.merchant_id is None else parse_id(MERCHANT_ID_PREFIX, self.merchant_id)

    def schedule(self) -> FeeSchedule:
        return _schedule(self.rules)


class FeeScheduleReplaceRequest(_Body):
    name: Name
    rules: Rules
    version: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] | None = None
    """When given, the replacement applies only if this is the current version (else 409)."""

    def schedule(self) -> FeeSchedule:
        return _schedule(self.rules)


def _datetime(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


class FeeScheduleResponse(BaseModel):
    id: str
    merchant_id: str | None
    name: str
    version: int
    rules: list[FeeRuleBody]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: FeeScheduleRow) -> FeeScheduleResponse:
        document = schedule_to_document(schedule_of(row))
        return cls(
            id=format_id(SCHEDULE_ID_PREFIX, row.id),
            merchant_id=None
            if row.merchant_id is None
            else format_id(MERCHANT_ID_PREFIX, row.merchant_id),
            name=row.name,
            version=row.version,
            rules=[FeeRuleBody.model_validate(rule) for rule in document],
            created_at=_datetime(row.created_at),
            updated_at=_datetime(row.updated_at),
        )


class FeeSchedulePage(BaseModel):
    items: list[FeeScheduleResponse]
    next_cursor: str | None


class FeeQuoteRequest(_Body):
    merchant_id: MerchantId | None = None
    method: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    currency: Code
    amount: AmountText
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    monthly_volume: AmountText = "0"


class FeeLineResponse(BaseModel):
    rule: str
    description: str
    amount: str
    currency: str


class FeeQuoteResponse(BaseModel):
    lines: list[FeeLineResponse]
    total: str
    currency: str

    @classmethod
    def from_quote(cls, quote: FeeQuote, *, currency: str) -> FeeQuoteResponse:
        return cls(
            lines=[
                FeeLineResponse(
                    rule=line.rule,
                    description=line.description,
                    amount=str(line.amount_minor),
                    currency=line.currency,
                )
                for line in quote.lines
            ],
            total=str(quote.total_minor),
            currency=currency,
        )
