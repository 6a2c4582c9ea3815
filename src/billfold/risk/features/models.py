"""Risk features' tables: the database counter backend and the users' risk profiles.

`risk_counters` holds three kinds of rows, told apart by `width_s`:

- velocity buckets (`width_s` > 0): the count and amount of the movements of one key
  (`user:…`, `device:…`, …) whose time fell in bucket `bucket` of that width;
- "seen" members and running histories (`width_s` = 0, `bucket` = 0): a key of the form
  `seen:<set>:<member>` exists once the member was remembered; `history:<key>` carries a
  running count, sum and sum of squares of amounts.

Velocity rows expire (`expires_at`, ns) once no window can reach them; seen and history
rows never do.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["AMOUNT_SUM_MAX", "COUNTER_KEY_LENGTH_MAX", "RiskCounter", "RiskProfile"]

COUNTER_KEY_LENGTH_MAX = 160
"""Longer keys are stored as a hash (``billfold.risk.features.counters.storage_key``)."""
AMOUNT_SUM_MAX = 2**56
"""Where a stored sum of amounts (a bucket's, a history's) stops growing: 128 of them still
fit a signed 64-bit integer, so neither a row nor a 30-day window's sum of 120 buckets
overflows (a BIGINT or a Redis hash field refuses the write, SQLite's sum() the read)."""


class RiskCounter(Base):
    """One velocity bucket, one "seen" member or one running history of one tenant's mode."""

    __tablename__ = "risk_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    mode: Mapped[str] = mapped_column(String(4), primary_key=True)
    key: Mapped[str] = mapped_column(String(COUNTER_KEY_LENGTH_MAX), primary_key=True)
    """What is counted, e.g. `user:<hex>:EUR`, `seen:devices:<user hex>:<device hex>`."""
    width_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The bucket width in seconds; 0 for seen members and histories."""
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """The bucket's index (its start in seconds / `width_s`); 0 when `width_s` is 0."""
    count: Mapped[int] = mapped_column(BigInteger)
    """Movements counted."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """Their amounts' sum in minor units (each amount capped, see `AMOUNT_COUNTED_MAX`; the
    sum stops at `AMOUNT_SUM_MAX`)."""
    amount_squares: Mapped[float] = mapped_column(Float)
    """Their amounts' squares' sum (histories only; 0 elsewhere)."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When no window reaches this bucket any more (ns); NULL: kept."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("width_s >= 0", name="width"),
        Index("ix_risk_counters_expires_at", "expires_at"),
        # SQLite: the primary key is the table (no rowid), so a window's read is one range
        # of it rather than an index range plus a table lookup per bucket.
        {"sqlite_with_rowid": False},
    )


class RiskProfile(Base):
    """What risk knows of an end user beyond identity: where they live."""

    __tablename__ = "risk_profiles"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    mode: Mapped[str] = mapped_column(String(4), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The end user (`usr_…`)."""
    residence_country: Mapped[str | None] = mapped_column(String(2))
    """ISO 3166-1 alpha-2, upper case; NULL when unknown."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When the profile was last set, ns since the epoch."""

    __table_args__ = (CheckConstraint("mode IN ('test', 'live')", name="mode"),)
