"""The operator client against the real application: log in and out, the one-time password
changed at first sign-in, managing operators, and the four-eyes flow (one operator asks,
another approves, the money moves once; a refusal moves nothing)."""

from __future__ import annotations

import uuid

import pytest

from billfold.client import (
    AuthenticationError,
    Billfold,
    BillfoldOperator,
    ConflictError,
    NotFoundError,
    NotSignedInError,
    PermissionDeniedError,
    ValidationError,
)
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from client.sdk_support import FlakyTransport, Server, running, unique_email

NEW_PASSWORD = "a long passphrase of my own"


def _funded_accounts(billfold: Billfold) -> tuple[str, str]:
    debit = billfold.accounts.create(ledger="USD", code=1)
    credit = billfold.accounts.create(ledger="USD", code=1)
    return debit["id"], credit["id"]


def _first_administrator(server: Server) -> tuple[BillfoldOperator, str]:
    """Made over HTTP with a live tenant:admin key, signed in with its one-time password."""
    with server.billfold([Scope.TENANT_ADMIN], mode=Mode.LIVE) as root:
        created = root.operators.create(
            email=unique_email(), display_name="First admin", roles=["admin"]
        )
    assert created["password_change_required"] is True
    admin = server.operator()
    admin.log_in(email=created["email"], password=created["one_time_password"])
    return admin, created["one_time_password"]


def test_an_operator_changes_the_one_time_password_then_manages_others(
    database_url: str,
) -> None:
    with running(database_url) as server:
        with (
            server.billfold([Scope.TENANT_ADMIN]) as test_key,
            pytest.raises(PermissionDeniedError) as test_mode,
        ):
            test_key.operators.create(email=unique_email(), display_name="X", roles=["admin"])
        assert test_mode.value.code == "permission_denied"

        admin, one_time_password = _first_administrator(server)
        with admin:
            assert admin.me()["password_change_required"] is True
            with pytest.raises(PermissionDeniedError) as must_change:
                admin.operators.list()
            assert must_change.value.code == "password_change_required"
            changed = admin.change_password(
                current_password=one_time_password, new_password=NEW_PASSWORD
            )
            assert changed["password_change_required"] is False
            assert "operators.manage" in admin.me()["permissions"]

            support = admin.operators.create(
                email=unique_email(), display_name="Support", roles=["support"]
            )
            assert support["one_time_password"]
            assert admin.operators.get(support["id"])["roles"] == ["support"]
            everyone = [operator["id"] for operator in admin.operators.iterate(limit=1)]
            assert support["id"] in everyone and len(everyone) == 2
            assert admin.operators.list(limit=1)["next_cursor"] is not None
            promoted = admin.operators.set_roles(support["id"], roles=["support", "risk_analyst"])
            assert promoted["roles"] == ["risk_analyst", "support"]
            assert admin.operators.disable(support["id"])["status"] == "disabled"
            assert admin.operators.enable(support["id"])["status"] == "active"
            left = admin.operators.disable(support["id"], reason="left the company")
            assert left["status"] == "disabled"
            assert admin.operators.enable(support["id"], reason="rehired")["status"] == "active"
            with pytest.raises(PermissionDeniedError) as self_management:
                admin.operators.disable(admin.me()["id"])
            assert self_management.value.code == "self_management_forbidden"
            with pytest.raises(NotFoundError) as missing:
                admin.operators.get(f"opr_{uuid.uuid4().hex}")
            assert missing.value.code == "operator_not_found"
            with pytest.raises(ConflictError) as taken:
                admin.operators.create(
                    email=support["email"], display_name="Again", roles=["support"]
                )
            assert taken.value.code == "operator_email_taken"

            admin.log_out()
            assert admin.token is None
            with pytest.raises(NotSignedInError):
                admin.me()

        stranger = server.operator()
        with stranger, pytest.raises(AuthenticationError) as failed:
            stranger.log_in(email=unique_email(), password="wrong password, long enough")
        assert failed.value.code == "login_failed"
        # A session token taken over by another client works until it is logged out.
        again = server.operator()
        session = again.log_in(email=changed["email"], password=NEW_PASSWORD)
        with server.operator(token=session["token"]) as resumed:
            assert resumed.me()["id"] == changed["id"]
            again.log_out()
            with pytest.raises(AuthenticationError):
                resumed.me()


def test_four_eyes_one_asks_another_approves_and_money_moves_once(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        debit_id, credit_id = _funded_accounts(billfold)
        requester = server.signed_in_operator([Role.FINANCE])
        approver = server.signed_in_operator([Role.FINANCE])
        support = server.signed_in_operator([Role.SUPPORT])

        asked = requester.approvals.request_ledger_adjustment(
            mode="test",
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=2**70,
            asset="USD",
            reason="Correct a misposted top-up",
        )
        assert asked["status"] == "pending"
        assert asked["payload"]["amount"] == str(2**70)
        assert requester.approvals.get(asked["id"])["requested_by"] == asked["requested_by"]
        pending = [item["id"] for item in approver.approvals.iterate(status="pending", limit=1)]
        assert pending == [asked["id"]]

        with pytest.raises(PermissionDeniedError) as own:
            requester.approvals.approve(asked["id"])
        assert own.value.code == "self_approval_forbidden"
        with pytest.raises(NotFoundError):  # support does not even see ledger adjustments
            support.approvals.approve(asked["id"])
        assert billfold.accounts.get(credit_id)["credits_posted"] == "0"

        # The approval's answer is lost after the server executed it; the SDK retries with
        # the same key and gets the replay, never a second execution.
        flaky = FlakyTransport(server.transport(), ["drop"])
        with server.operator(http_transport=flaky, token=approver.token) as lossy:
            decided = lossy.approvals.approve(asked["id"], note="Checked the statement")
        assert len(flaky.attempts) == 2 and flaky.reached_app == [True, True]
        assert decided["status"] == "executed"
        assert decided["decided_by"] != decided["requested_by"]
        assert decided["result"] is not None
        with pytest.raises(ConflictError) as twice:
            approver.approvals.approve(asked["id"])
        assert twice.value.code == "approval_already_decided"

        assert billfold.accounts.get(credit_id)["credits_posted"] == str(2**70)
        assert billfold.accounts.get(debit_id)["debits_posted"] == str(2**70)
        moved = list(billfold.transfers.iterate(account_id=credit_id))
        assert [transfer["amount"] for transfer in moved] == [str(2**70)]
        assert [item["status"] for item in requester.approvals.list()["items"]] == ["executed"]
        for client in (requester, approver, support):
            client.close()


def test_a_refused_request_moves_nothing(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        debit_id, credit_id = _funded_accounts(billfold)
        requester = server.signed_in_operator([Role.FINANCE])
        approver = server.signed_in_operator([Role.FINANCE])
        with pytest.raises(ValidationError) as invalid:
            requester.approvals.create(
                action_type="ledger_adjustment",
                payload={"mode": "test", "amount": "12"},
                reason="Incomplete",
            )
        assert invalid.value.code in {"invalid_approval_payload", "validation_failed"}
        asked = requester.approvals.request_ledger_adjustment(
            mode="test",
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=500,
            asset="USD",
            reason="Looks wrong",
            code=9001,
            expires_in_s=3600,
        )
        refused = approver.approvals.refuse(asked["id"], note="No evidence")
        assert refused["status"] == "refused"
        assert refused["decision_note"] == "No evidence"
        with pytest.raises(ConflictError):
            approver.approvals.approve(asked["id"])
        assert billfold.accounts.get(credit_id)["credits_posted"] == "0"
        assert [item["id"] for item in approver.approvals.list(status="refused")["items"]] == [
            asked["id"]
        ]
        requester.close()
        approver.close()
