"""Writing a note on a case is audited (``risk.case.noted``, by its author, naming the
note), like approving, rejecting and labelling; the note's text stays out of the
hash-chained log, as a decision's note does: it is free text an analyst may fill with a
customer's personal data, which the log cannot forget."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from identity.identity_support import run_in_unit_of_work
from risk.cases.test_cases_api import Desk, desk

__all__ = ["desk"]

_TEXT = "Called Jane Doe on +1 555 0100: she did not make it"


def _entries(desk: Desk, case_id: str) -> list[AuditEntry]:
    async def read(session: AsyncSession) -> list[AuditEntry]:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.target == case_id).order_by(AuditEntry.sequence)
        )
        return list(rows.scalars())

    return run_in_unit_of_work(desk.database_url, read)


def test_a_note_is_audited_without_its_text(desk: Desk) -> None:
    case_id = desk.case()
    written = desk.client.post(
        f"/v1/risk/cases/{case_id}/notes", json={"body": _TEXT}, headers=desk.analyst.headers
    )
    assert written.status_code == 201, written.text
    [entry] = _entries(desk, case_id)
    assert (entry.action, entry.actor_type, entry.actor_id) == (
        "risk.case.noted",
        "operator",
        desk.analyst.public_id,
    )
    assert json.loads(entry.after or "{}") == {
        "case_state": "open",
        "note_id": written.json()["id"],
    }
    stored = " ".join(str(value) for value in (entry.before, entry.after, entry.detail))
    assert "Jane" not in stored and "555" not in stored


def test_a_refused_note_is_not_audited(desk: Desk) -> None:
    case_id = desk.case()
    blank = desk.client.post(
        f"/v1/risk/cases/{case_id}/notes", json={"body": "  "}, headers=desk.analyst.headers
    )
    assert blank.status_code == 422, blank.text
    assert _entries(desk, case_id) == []
