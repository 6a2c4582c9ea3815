"""The review queue over HTTP: order and filters, approve posts the hold and reject voids
it (through a resolver over the real ledger), a second decision is refused and moves
nothing, labels and notes, a failed resolver leaves the case resolving until recovery,
expiry voids, and who may do what."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.flows.risk_cases import recover
from billfold.identity.operators.permissions import Role
from billfold.kit.clock import SystemClock
from billfold.kit.ids import format_id
from billfold.kit.pagination import encode_cursor
from billfold.risk.cases.service import NOTES_PER_CASE_MAX
from billfold.risk.labels import LabelSource
from billfold.risk.models import RiskLabel
from billfold.risk.types import MovementKind
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    SignedIn,
    end_user,
    new_tenant,
    operator,
    operator_client,
)
from risk.cases.cases_support import (
    FUNDING,
    Holder,
    LedgerResolver,
    funded_holder,
    held_movement,
    wallet_balances,
)


@dataclass
class Desk:
    client: TestClient
    resolver: LedgerResolver
    analyst: SignedIn
    holder: Holder
    database_url: str

    def case(self, amount: int = 5_000, **options: object) -> str:
        _, case_id = held_movement(self.database_url, self.holder, amount=amount, **options)  # type: ignore[arg-type]
        return format_id("rcs", case_id)

    def post(self, path: str, body: object = None, who: SignedIn | None = None) -> object:
        return self.client.post(path, json=body, headers=(who or self.analyst).headers)


@pytest.fixture
def desk(database_url: str) -> Iterator[Desk]:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    holder = funded_holder(
        database_url, tenant_id=tenant_id, user=end_user(database_url, tenant_id=tenant_id)
    )
    with operator_client(database_url) as client:
        resolver = LedgerResolver(client.app.state.ledger)  # type: ignore[attr-defined]
        client.app.state.held_resolver = resolver  # type: ignore[attr-defined]
        yield Desk(client, resolver, analyst, holder, database_url)


def _labels(database_url: str, reference: str) -> list[tuple[bool, str]]:
    async def read(session: AsyncSession) -> list[tuple[bool, str]]:
        rows = await session.execute(
            select(RiskLabel.fraud, RiskLabel.source).where(RiskLabel.reference == reference)
        )
        return [(row.fraud, row.source) for row in rows]

    return run_in_unit_of_work(database_url, read)


@pytest.mark.parametrize("opened_at", [2**63, 2**70, -1])
def test_a_forged_cursor_beyond_any_time_is_400_not_500(desk: Desk, opened_at: int) -> None:
    """Cursors are not signed: one holding a time no BIGINT holds reached the database,
    which refused it (OverflowError on SQLite, out of range on PostgreSQL) as a 500."""
    desk.case(opened_at_ns=time.time_ns())
    cursor = encode_cursor([opened_at, "0" * 32])
    response = desk.client.get(
        "/v1/risk/cases", params={"cursor": cursor}, headers=desk.analyst.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize("path", ["/v1/risk/cases", "/v1/risk/responses"])
def test_a_malformed_user_filter_is_400_invalid_id(desk: Desk, path: str) -> None:
    """As on the decisions' list: the collection exists, the filter is malformed (it was
    404 `risk_subject_not_found`)."""
    answer = desk.client.get(path, params={"user_id": "usr_nope"}, headers=desk.analyst.headers)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_id"


def test_the_queue_lists_open_cases_oldest_first_with_filters(desk: Desk) -> None:
    base = time.time_ns()
    older = desk.case(opened_at_ns=base - 3_000)
    newer = desk.case(opened_at_ns=base - 1_000)
    middle = desk.case(opened_at_ns=base - 2_000, kind=MovementKind.WITHDRAWAL)
    headers = desk.analyst.headers
    listed = desk.client.get("/v1/risk/cases", headers=headers).json()
    assert [item["id"] for item in listed["items"]] == [older, middle, newer]
    assert listed["next_cursor"] is None
    first = desk.client.get("/v1/risk/cases?limit=2", headers=headers).json()
    assert [item["id"] for item in first["items"]] == [older, middle]
    rest = desk.client.get(
        "/v1/risk/cases", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [item["id"] for item in rest["items"]] == [newer] and rest["next_cursor"] is None
    withdrawals = desk.client.get("/v1/risk/cases?kind=withdrawal", headers=headers).json()
    assert [item["id"] for item in withdrawals["items"]] == [middle]
    user = format_id("usr", desk.holder.user_id)
    mine = desk.client.get("/v1/risk/cases", params={"user_id": user}, headers=headers).json()
    assert len(mine["items"]) == 3
    other = desk.client.get(
        "/v1/risk/cases", params={"user_id": f"usr_{'0' * 32}"}, headers=headers
    ).json()
    assert other["items"] == []
    desk.post(f"/v1/risk/cases/{older}/reject")
    still_open = desk.client.get("/v1/risk/cases", headers=headers).json()
    assert [item["id"] for item in still_open["items"]] == [middle, newer]
    rejected = desk.client.get("/v1/risk/cases?state=rejected", headers=headers).json()
    assert [item["id"] for item in rejected["items"]] == [older]
    too_many = desk.client.get("/v1/risk/cases?limit=100000", headers=headers)
    assert too_many.status_code == 422


def test_approving_posts_the_hold_and_labels_it_legitimate(desk: Desk) -> None:
    case_id = desk.case(amount=5_000)
    reference = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()[
        "reference"
    ]
    assert wallet_balances(desk.database_url, desk.holder)["wallet_pending"] == 5_000
    answer = desk.client.post(
        f"/v1/risk/cases/{case_id}/approve",
        json={"note": "Known payee, confirmed by phone"},
        headers=desk.analyst.headers,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "approved"
    assert body["resolved_by"] == desk.analyst.public_id
    assert body["resolution"]["action"] == "post" and body["resolution"]["state"] == "settled"
    assert [note["body"] for note in body["notes"]] == ["Known payee, confirmed by phone"]
    assert wallet_balances(desk.database_url, desk.holder) == {
        "wallet_pending": 0,
        "wallet_posted": 5_000,
        "payee_posted": 5_000,
    }
    assert _labels(desk.database_url, reference) == [(False, LabelSource.ANALYST.value)]


def test_rejecting_voids_the_hold_and_labels_it_fraud(desk: Desk) -> None:
    case_id = desk.case(amount=7_000)
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/reject", headers=desk.analyst.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "rejected" and body["resolution"]["action"] == "void"
    assert wallet_balances(desk.database_url, desk.holder) == {
        "wallet_pending": 0,
        "wallet_posted": 0,
        "payee_posted": 0,
    }
    assert _labels(desk.database_url, body["reference"]) == [(True, LabelSource.ANALYST.value)]


def test_deciding_a_case_twice_is_a_conflict_and_moves_nothing(desk: Desk) -> None:
    case_id = desk.case(amount=5_000)
    assert (
        desk.client.post(
            f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers
        ).status_code
        == 200
    )
    calls = desk.resolver.calls
    second = operator(
        desk.database_url, tenant_id=desk.holder.tenant_id, roles=[Role.COMPLIANCE_OFFICER]
    )
    for path, who in (
        (f"/v1/risk/cases/{case_id}/reject", second),
        (f"/v1/risk/cases/{case_id}/approve", desk.analyst),
    ):
        again = desk.client.post(path, headers=who.headers)
        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["code"] == "case_not_open"
    assert desk.resolver.calls == calls
    assert wallet_balances(desk.database_url, desk.holder)["wallet_posted"] == 5_000
    detail = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert _labels(desk.database_url, detail["reference"]) == [(False, "analyst")]


def test_a_repeated_request_with_its_idempotency_key_replays_the_answer(desk: Desk) -> None:
    case_id = desk.case(amount=1_000)
    headers = {**desk.analyst.headers, "Idempotency-Key": "approve-once"}
    first = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=headers)
    second = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert desk.resolver.calls == 1


def test_the_case_shows_the_decision_and_notes(desk: Desk) -> None:
    case_id = desk.case(amount=2_500)
    headers = desk.analyst.headers
    for text in ("First look: payee is new", "Called the user"):
        note = desk.client.post(
            f"/v1/risk/cases/{case_id}/notes", json={"body": text}, headers=headers
        )
        assert note.status_code == 201, note.text
        assert note.json()["author_id"] == desk.analyst.public_id
    blank = desk.client.post(
        f"/v1/risk/cases/{case_id}/notes", json={"body": "   "}, headers=headers
    )
    assert blank.status_code == 422
    detail = desk.client.get(f"/v1/risk/cases/{case_id}", headers=headers).json()
    assert detail["state"] == "open" and detail["amount"] == "2500"
    assert detail["decision"]["score"] == 720
    assert detail["decision"]["reasons"] == ["amount 9x the user's usual", "new payee"]
    assert detail["decision"]["features"]["new_payee"] is True
    assert [note["body"] for note in detail["notes"]] == [
        "First look: payee is new",
        "Called the user",
    ]
    assert detail["resolution"] is None


def test_a_decision_whose_note_passes_the_notes_limit_is_refused_and_moves_nothing(
    desk: Desk,
) -> None:
    """A case shows at most its first NOTES_PER_CASE_MAX notes: a decision's note past
    them was stored, hidden, and the case decided all the same."""
    case_id = desk.case(amount=3_000)
    headers = desk.analyst.headers
    for number in range(NOTES_PER_CASE_MAX):
        note = desk.client.post(
            f"/v1/risk/cases/{case_id}/notes", json={"body": f"look {number}"}, headers=headers
        )
        assert note.status_code == 201, note.text
    refused = desk.client.post(
        f"/v1/risk/cases/{case_id}/approve", json={"note": "Known payee"}, headers=headers
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "case_note_limit_reached"
    detail = desk.client.get(f"/v1/risk/cases/{case_id}", headers=headers).json()
    assert detail["state"] == "open" and detail["resolution"] is None
    assert desk.resolver.calls == 0
    assert wallet_balances(desk.database_url, desk.holder)["wallet_pending"] == 3_000
    assert _labels(desk.database_url, detail["reference"]) == []
    approved = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"


def test_a_label_is_recorded_and_a_new_one_replaces_it(desk: Desk) -> None:
    case_id = desk.case()
    headers = desk.analyst.headers
    for fraud in (True, False):
        answer = desk.client.post(
            f"/v1/risk/cases/{case_id}/label", json={"fraud": fraud}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    reference = answer.json()["reference"]
    assert _labels(desk.database_url, reference) == [(False, "analyst")]
    assert answer.json()["state"] == "open"  # a label decides nothing


def test_a_failed_resolver_leaves_the_case_resolving_until_recovery(desk: Desk) -> None:
    case_id = desk.case(amount=4_000)
    desk.resolver.failures = 1
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "resolving"
    assert body["resolution"]["state"] == "pending" and body["resolution"]["attempts"] == 1
    assert body["resolution"]["last_error"] == "ConnectionError"
    assert wallet_balances(desk.database_url, desk.holder)["wallet_pending"] == 4_000
    resolving = desk.client.get(
        "/v1/risk/cases?state=resolving", headers=desk.analyst.headers
    ).json()
    assert [item["id"] for item in resolving["items"]] == [case_id]
    again = desk.client.post(f"/v1/risk/cases/{case_id}/reject", headers=desk.analyst.headers)
    assert again.status_code == 409  # decided: only the money is still to move
    state = desk.client.app.state  # type: ignore[attr-defined]
    recovered = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: recover(
            state.unit_of_work, state.ledger, desk.resolver, clock=SystemClock(), older_than_s=0
        )
    )
    assert recovered.settled == 1
    after = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert after["state"] == "approved" and after["resolution"]["state"] == "settled"
    assert wallet_balances(desk.database_url, desk.holder) == {
        "wallet_pending": 0,
        "wallet_posted": 4_000,
        "payee_posted": 4_000,
    }


def test_a_case_past_its_hold_expires_and_its_hold_is_voided(desk: Desk) -> None:
    past = time.time_ns() - 1_000
    case_id = desk.case(amount=3_000, opened_at_ns=past - 10**9, hold_expires_at_ns=past)
    state = desk.client.app.state  # type: ignore[attr-defined]
    recovered = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: recover(state.unit_of_work, state.ledger, desk.resolver, clock=SystemClock())
    )
    assert recovered.expired == 1
    detail = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert detail["state"] == "expired" and detail["resolved_by"] is None
    assert wallet_balances(desk.database_url, desk.holder)["wallet_pending"] == 0
    assert wallet_balances(desk.database_url, desk.holder)["wallet_posted"] == 0


def test_decisions_are_audited(desk: Desk) -> None:
    case_id = desk.case()
    desk.post(f"/v1/risk/cases/{case_id}/reject")

    async def read(session: AsyncSession) -> list[tuple[str, str | None]]:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.actor_id).where(AuditEntry.target == case_id)
        )
        return [(row.action, row.actor_id) for row in rows]

    assert run_in_unit_of_work(desk.database_url, read) == [
        ("risk.case.rejected", desk.analyst.public_id)
    ]


def test_support_cannot_review_and_another_tenant_sees_nothing(desk: Desk) -> None:
    case_id = desk.case()
    support = operator(desk.database_url, tenant_id=desk.holder.tenant_id, roles=[Role.SUPPORT])
    for method, path in (
        ("GET", "/v1/risk/cases"),
        ("GET", f"/v1/risk/cases/{case_id}"),
        ("POST", f"/v1/risk/cases/{case_id}/approve"),
        ("POST", f"/v1/risk/cases/{case_id}/reject"),
    ):
        answer = desk.client.request(method, path, headers=support.headers)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "permission_denied"
    intruder_tenant = new_tenant(desk.database_url).tenant.id
    intruder = operator(desk.database_url, tenant_id=intruder_tenant, roles=[Role.RISK_ANALYST])
    for method, path in (
        ("GET", f"/v1/risk/cases/{case_id}"),
        ("POST", f"/v1/risk/cases/{case_id}/approve"),
        ("POST", f"/v1/risk/cases/{case_id}/label"),
    ):
        body = {"fraud": True} if path.endswith("label") else None
        answer = desk.client.request(method, path, json=body, headers=intruder.headers)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["code"] == "case_not_found"
    assert desk.client.get("/v1/risk/cases", headers=intruder.headers).json()["items"] == []
    assert wallet_balances(desk.database_url, desk.holder)["wallet_pending"] == 5_000
    assert FUNDING > 5_000


def test_without_a_resolver_deciding_is_refused_and_changes_nothing(desk: Desk) -> None:
    case_id = desk.case()
    del desk.client.app.state.held_resolver  # type: ignore[attr-defined]
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers)
    assert answer.status_code == 503
    assert answer.json()["code"] == "held_resolver_unavailable"
    detail = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert detail["state"] == "open"
