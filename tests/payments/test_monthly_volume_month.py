"""The calendar month (UTC) a movement counts in for tiered fees is computed in integers: the
last nanoseconds of a month belong to that month, not the next."""

from __future__ import annotations

from datetime import UTC, datetime

from billfold.payments.service import month_of

_SECOND_NS = 1_000_000_000


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * _SECOND_NS


def test_the_last_nanosecond_of_a_month_is_in_that_month() -> None:
    december = _ns(datetime(2026, 12, 1, tzinfo=UTC))
    assert month_of(december - 1) == "2026-11"
    assert month_of(december - 100) == "2026-11"
    assert month_of(december) == "2026-12"
    new_year = _ns(datetime(2027, 1, 1, tzinfo=UTC))
    assert month_of(new_year - 1) == "2026-12"
    assert month_of(new_year) == "2027-01"
