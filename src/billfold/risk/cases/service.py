"""The review queue: reading cases, notes, labels, and deciding a case (the claim only: the
money moves in ``billfold.flows.risk_cases``, through the installed resolver).

A case moves once, by a conditional UPDATE on ``open``: of two concurrent decisions exactly
one wins, the other gets ``case_not_open``. Deciding writes, in the same transaction, the
case's resolution (``pending``: the money is still held), the analyst's label (approve →
legitimate, reject → fraud, source ``analyst``), the optional note and an audit entry.
Functions flush and never commit.

States as the API shows them: ``open``; ``resolving`` (decided, the held money not moved
yet); ``approved``, ``rejected``, ``expired`` (decided and the money moved).
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.schemas import datetime_from_ns
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import (
    InvalidCursor,
    Page,
    clamp_page_size,
    decode_cursor,
    encode_cursor,
)
from billfold.risk.cases.errors import (
    CaseHoldExpired,
    CaseNoteLimitReached,
    CaseNotFound,
    CaseNotOpen,
    InvalidCaseNote,
)
from billfold.risk.cases.models import NOTE_LENGTH_MAX, RiskCaseNote, RiskCaseResolution
from billfold.risk.cases.repository import CaseFilter, CaseRepository
from billfold.risk.labels import LabelSource, record_label
from billfold.risk.models import RiskCase, RiskDecision

__all__ = [
    "API_STATES",
    "CASE_ID_PREFIX",
    "DECISION_ID_PREFIX",
    "NOTES_PER_CASE_MAX",
    "NOTE_ID_PREFIX",
    "OPERATOR_ID_PREFIX",
    "CaseDetail",
    "CaseSummary",
    "add_note",
    "api_state",
    "claim_decision",
    "claim_expiry",
    "clean_note",
    "close_unheld",
    "decision_view",
    "get_case",
    "label_case",
    "list_cases",
    "raise_if_undecidable",
]

_HOLD_TIME: Final = TypeAdapter(datetime)
"""The hold's end in a problem, as the case shows it (RFC 3339, UTC)."""
CASE_ID_PREFIX = "rcs"
NOTE_ID_PREFIX = "rcn"
DECISION_ID_PREFIX = "rdc"
OPERATOR_ID_PREFIX = "opr"
NOTES_PER_CASE_MAX = 100
API_STATES: Final = ("open", "resolving", "approved", "rejected", "expired")
_OPERATOR = "operator"
_SYSTEM = "system"


def api_state(case: RiskCase, resolution_state: str | None) -> str:
    """The case's state as the API shows it: never settled while its money is held."""
    if case.state != "open" and resolution_state == "pending":
        return "resolving"
    return case.state


@dataclass(frozen=True, slots=True)
class CaseSummary:
    case: RiskCase
    state: str
    """As the API shows it (:func:`api_state`)."""


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: RiskCase
    state: str
    resolution: RiskCaseResolution | None
    decision: RiskDecision | None
    notes: list[RiskCaseNote]


def clean_note(text: str) -> str:
    """A note as stored: trimmed, 1 to NOTE_LENGTH_MAX characters, no control characters
    but line breaks and tabs."""
    cleaned = text.strip()
    controls = any(
        unicodedata.category(character) == "Cc" and character not in "\n\t" for character in cleaned
    )
    if not 1 <= len(cleaned) <= NOTE_LENGTH_MAX or controls:
        raise InvalidCaseNote(
            f"A note has 1 to {NOTE_LENGTH_MAX} characters and no control characters."
        )
    return cleaned


async def list_cases(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    where: CaseFilter,
    cursor: str | None,
    limit: int | None,
) -> Page[CaseSummary]:
    """The queue: cases in ``where.state``, oldest opened first, one bounded page."""
    page_size = clamp_page_size(limit)
    repository = CaseRepository(session)
    rows = await repository.queue(
        tenant_id=tenant_id,
        where=where,
        after=None if cursor is None else _cursor_key(cursor),
        limit=page_size + 1,
    )
    items = rows[:page_size]
    states = await repository.resolutions([case.id for case in items])
    next_cursor = (
        encode_cursor([items[-1].opened_at, items[-1].id.hex]) if len(rows) > page_size else None
    )
    summaries = [CaseSummary(case, api_state(case, states.get(case.id))) for case in items]
    return Page(items=summaries, next_cursor=next_cursor)


def _cursor_key(cursor: str) -> tuple[int, uuid.UUID]:
    values = decode_cursor(cursor)
    if len(values) != 2 or not isinstance(values[0], int) or not isinstance(values[1], str):
        raise InvalidCursor("The cursor is malformed.")
    if not 0 <= values[0] < 2**63:  # a forged one no BIGINT holds was a 500 from the database
        raise InvalidCursor("The cursor is malformed.")
    try:
        return values[0], uuid.UUID(hex=values[1])
    except ValueError as error:
        raise InvalidCursor("The cursor is malformed.") from error


async def _case(session: AsyncSession, *, tenant_id: uuid.UUID, case_id: uuid.UUID) -> RiskCase:
    case = await CaseRepository(session).get(tenant_id=tenant_id, case_id=case_id)
    if case is None:
        raise CaseNotFound()
    return case


async def get_case(
    session: AsyncSession, *, tenant_id: uuid.UUID, case_id: uuid.UUID
) -> CaseDetail:
    """A case of the tenant with its decision (reasons, score, features), resolution and
    notes (oldest first)."""
    repository = CaseRepository(session)
    case = await _case(session, tenant_id=tenant_id, case_id=case_id)
    resolution = await repository.resolution(case.id)
    return CaseDetail(
        case=case,
        state=api_state(case, None if resolution is None else resolution.state),
        resolution=resolution,
        decision=await repository.decision(tenant_id=tenant_id, decision_id=case.decision_id),
        notes=await repository.notes(case_id=case.id, limit=NOTES_PER_CASE_MAX),
    )


async def add_note(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    case_id: uuid.UUID,
    author_id: uuid.UUID,
    body: str,
    now_ns: int,
) -> RiskCaseNote:
    """Write a note on a case (any state) and audit it ``risk.case.noted``; at most
    NOTES_PER_CASE_MAX per case. The entry names the note, not its text: a note is free
    text an analyst may fill with a customer's personal data, which the hash-chained log
    could never forget (a decision's note stays out of its entry too)."""
    text = clean_note(body)
    case = await _case(session, tenant_id=tenant_id, case_id=case_id)
    repository = CaseRepository(session)
    await _room_for_a_note(repository, case.id)
    note = RiskCaseNote(
        id=new_id(),
        tenant_id=tenant_id,
        case_id=case.id,
        author_id=author_id,
        body=text,
        created_at=now_ns,
    )
    await repository.add_note(note)
    await _audit(
        session,
        case,
        action="risk.case.noted",
        actor_id=author_id,
        now_ns=now_ns,
        extra={"note_id": format_id(NOTE_ID_PREFIX, note.id)},
    )
    return note


async def _room_for_a_note(repository: CaseRepository, case_id: uuid.UUID) -> None:
    """A case keeps at most NOTES_PER_CASE_MAX notes, all shown with it: one more would be
    stored but never shown."""
    if await repository.count_notes(case_id=case_id) >= NOTES_PER_CASE_MAX:
        raise CaseNoteLimitReached(
            f"A case has at most {NOTES_PER_CASE_MAX} notes.", limit=NOTES_PER_CASE_MAX
        )


async def claim_decision(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    case_id: uuid.UUID,
    operator_id: uuid.UUID,
    approve: bool,
    note: str | None,
    now_ns: int,
) -> RiskCase:
    """Decide an open case: claim it, write its pending resolution, the analyst's label,
    the note and an audit entry (flush only). ``case_not_open`` when it was decided before,
    ``case_hold_expired`` for an approval past the case's hold (:func:`raise_if_undecidable`):
    nothing is written then, nor when its note would pass the notes' limit
    (``case_note_limit_reached``)."""
    text = None if note is None else clean_note(note)
    repository = CaseRepository(session)
    if text is not None:
        await _room_for_a_note(repository, case_id)
    to_state = "approved" if approve else "rejected"
    claimed = await repository.claim(
        tenant_id=tenant_id,
        case_id=case_id,
        to_state=to_state,
        resolved_by=operator_id,
        now_ns=now_ns,
        held=approve,
    )
    case = await _case(session, tenant_id=tenant_id, case_id=case_id)
    await session.refresh(case)  # the conditional UPDATE bypassed the identity map
    if not claimed:
        raise_if_undecidable(case, approve=approve, now_ns=now_ns)
        invariant(False, "an open case with its hold in force is claimed")
    invariant(case.state == to_state, "a claimed case is in its decided state")
    await _add_resolution(session, case, approve=approve, now_ns=now_ns)
    await record_label(
        session,
        tenant_id=tenant_id,
        mode=case.mode,
        reference=case.reference,
        fraud=not approve,
        source=LabelSource.ANALYST,
        decision_id=case.decision_id,
        at_ns=now_ns,
    )
    if text is not None:
        await repository.add_note(
            RiskCaseNote(
                id=new_id(),
                tenant_id=tenant_id,
                case_id=case.id,
                author_id=operator_id,
                body=text,
                created_at=now_ns,
            )
        )
    await _audit(session, case, action=f"risk.case.{to_state}", actor_id=operator_id, now_ns=now_ns)
    return case


def raise_if_undecidable(case: RiskCase, *, approve: bool, now_ns: int) -> None:
    """``case_not_open`` for a decided case; ``case_hold_expired`` for an approval of an
    open case whose hold lapsed (the expiry sweep voids it soon). The hold's end is the
    promise made to the payer that the money is released by then: an approval after it,
    only because the sweep had not come yet, would break it (and outlive a merchant
    authorization's ledger hold). A rejection releases the money as expiry does: allowed."""
    if case.state != "open":
        raise CaseNotOpen(f"The case is {case.state}.", case_state=case.state)
    if approve and case.hold_expires_at <= now_ns:
        raise CaseHoldExpired(
            "The case's hold has lapsed; it expires and its movement is released.",
            hold_expires_at=_HOLD_TIME.dump_python(
                datetime_from_ns(case.hold_expires_at), mode="json"
            ),
        )


async def claim_expiry(session: AsyncSession, *, case: RiskCase, now_ns: int) -> bool:
    """Expire an open case past its hold (its hold is then voided); False when it was
    decided meanwhile."""
    claimed = await CaseRepository(session).claim(
        tenant_id=case.tenant_id,
        case_id=case.id,
        to_state="expired",
        resolved_by=None,
        now_ns=now_ns,
    )
    if not claimed:
        return False
    await session.refresh(case)
    await _add_resolution(session, case, approve=False, now_ns=now_ns)
    await _audit(session, case, action="risk.case.expired", actor_id=None, now_ns=now_ns)
    return True


async def close_unheld(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, reference: str, now_ns: int
) -> bool:
    """Expire the open case of a movement whose hold could not be placed: claimed as any
    expiry is, its resolution settled at once (nothing is held, nothing to void) and
    audited ``risk.case.expired``; False when there is no open case for `reference`."""
    repository = CaseRepository(session)
    case = await repository.by_reference(tenant_id=tenant_id, mode=mode, reference=reference)
    if case is None or not await repository.claim(
        tenant_id=tenant_id, case_id=case.id, to_state="expired", resolved_by=None, now_ns=now_ns
    ):
        return False
    await session.refresh(case)
    await _add_resolution(session, case, approve=False, now_ns=now_ns, settled=True)
    await _audit(session, case, action="risk.case.expired", actor_id=None, now_ns=now_ns)
    return True


async def _add_resolution(
    session: AsyncSession, case: RiskCase, *, approve: bool, now_ns: int, settled: bool = False
) -> None:
    await CaseRepository(session).add_resolution(
        RiskCaseResolution(
            case_id=case.id,
            tenant_id=case.tenant_id,
            mode=case.mode,
            reference=case.reference,
            approve=approve,
            state="settled" if settled else "pending",
            attempts=0,
            last_error=None,
            requested_at=now_ns,
            settled_at=now_ns if settled else None,
        )
    )


async def label_case(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    case_id: uuid.UUID,
    operator_id: uuid.UUID,
    fraud: bool,
    now_ns: int,
) -> RiskCase:
    """An analyst's label on the case's movement (any state; a later one replaces it)."""
    case = await _case(session, tenant_id=tenant_id, case_id=case_id)
    changed = await record_label(
        session,
        tenant_id=tenant_id,
        mode=case.mode,
        reference=case.reference,
        fraud=fraud,
        source=LabelSource.ANALYST,
        decision_id=case.decision_id,
        at_ns=now_ns,
    )
    if changed:
        await _audit(
            session,
            case,
            action="risk.case.labelled",
            actor_id=operator_id,
            now_ns=now_ns,
            extra={"fraud": fraud},
        )
    return case


async def _audit(
    session: AsyncSession,
    case: RiskCase,
    *,
    action: str,
    actor_id: uuid.UUID | None,
    now_ns: int,
    extra: dict[str, object] | None = None,
) -> None:
    await audit.append(
        session,
        tenant_id=case.tenant_id,
        action=action,
        occurred_at=now_ns,
        actor_type=_SYSTEM if actor_id is None else _OPERATOR,
        actor_id=None if actor_id is None else format_id(OPERATOR_ID_PREFIX, actor_id),
        target=format_id(CASE_ID_PREFIX, case.id),
        after={"case_state": case.state} if extra is None else {"case_state": case.state, **extra},
        detail={
            "mode": case.mode,
            "reference": case.reference,
            "kind": case.kind,
            "amount": str(case.amount),
            "currency": case.currency,
            "decision_id": format_id(DECISION_ID_PREFIX, case.decision_id),
        },
    )


def decision_view(decision: RiskDecision) -> dict[str, object]:
    """The decision's stored reasons, features and hits as JSON values."""
    return {
        "reasons": json.loads(decision.reasons),
        "features": json.loads(decision.features),
        "hits": json.loads(decision.hits),
    }
