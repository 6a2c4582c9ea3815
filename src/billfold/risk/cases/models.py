"""The review queue's and the automated responses' own tables, beside risk's shared ones
(``risk_cases``, ``risk_responses`` in ``billfold.risk.models``).

- ``risk_case_notes``: what analysts wrote on a case.
- ``risk_case_resolutions``: the money side of a decided case. Deciding a case claims it
  (``open → approved | rejected | expired``) and writes its resolution ``pending`` in the
  same transaction; the held movement is then posted or voided through the resolver, and
  only then is the resolution ``settled``. A case whose resolution is still pending shows
  as ``resolving`` in the API: it never looks settled while its money is still held.
- ``risk_response_enforcements``: the ledger side of a ``freeze_account`` response. The
  response row is written in the movement's transaction; the accounts are frozen after it
  commits (the ledger cannot join that transaction), and this row says whether that
  happened yet, so a crash in between is finished by the recovery sweep.

Times are ns since the epoch.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "ERROR_LENGTH_MAX",
    "NOTE_LENGTH_MAX",
    "RiskCaseNote",
    "RiskCaseResolution",
    "RiskResponseEnforcement",
]

NOTE_LENGTH_MAX = 2_000
ERROR_LENGTH_MAX = 200


class RiskCaseNote(Base):
    """One analyst's note on a case. Append-only."""

    __tablename__ = "risk_case_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rcn_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant (the case's)."""
    case_id: Mapped[uuid.UUID] = mapped_column()
    """The case it is written on."""
    author_id: Mapped[uuid.UUID] = mapped_column()
    """The operator who wrote it."""
    body: Mapped[str] = mapped_column(Text)
    """The note, 1 to NOTE_LENGTH_MAX characters."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was written."""

    __table_args__ = (Index("ix_risk_case_notes_case", "case_id", "created_at"),)


class RiskCaseResolution(Base):
    """The money side of a decided case: the held movement posted (approve) or voided
    (reject, expiry), through the installed resolver, after the decision committed."""

    __tablename__ = "risk_case_resolutions"

    case_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The decided case (one resolution per case)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant (the case's)."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live (the case's)."""
    reference: Mapped[str] = mapped_column(String(64))
    """The held movement's API id, as the resolver is given it."""
    approve: Mapped[bool] = mapped_column(Boolean)
    """True: post the hold; False: void it."""
    state: Mapped[str] = mapped_column(String(16))
    """pending (the money is still held) or settled."""
    attempts: Mapped[int] = mapped_column(Integer)
    """How many times the resolver was called and failed."""
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH_MAX))
    """The last failure's kind, for operators (no message text: it may hold PII)."""
    requested_at: Mapped[int] = mapped_column(BigInteger)
    """When the case was decided."""
    settled_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the resolver confirmed the money moved."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("state IN ('pending', 'settled')", name="state"),
        Index("ix_risk_case_resolutions_pending", "state", "requested_at"),
    )


class RiskResponseEnforcement(Base):
    """Whether a ``freeze_account`` response's accounts were frozen in the ledger yet."""

    __tablename__ = "risk_response_enforcements"

    response_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The response (`rrs_<hex>` in the API)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant (the response's)."""
    state: Mapped[str] = mapped_column(String(16))
    """pending, done, or cancelled (the response was reversed before it was enforced)."""
    attempts: Mapped[int] = mapped_column(Integer)
    """How many enforcement attempts failed."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the response was applied."""
    done_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the ledger confirmed every account frozen (or the enforcement was cancelled)."""

    __table_args__ = (
        CheckConstraint("state IN ('pending', 'done', 'cancelled')", name="state"),
        Index("ix_risk_response_enforcements_pending", "state", "created_at"),
    )
