"""The permission matrix: pinned to its documented table, and enforced per role over HTTP."""

from __future__ import annotations

import itertools
import uuid

import pytest

from billfold.identity.operators import permissions as permissions_module
from billfold.identity.operators.permissions import (
    ACTION_PERMISSIONS,
    ROLE_PERMISSIONS,
    ActionType,
    Permission,
    Role,
    approvable_actions,
    permissions_of,
)
from billfold.kit.ids import format_id
from identity.operators.operators_support import (
    adjustment,
    end_user,
    new_tenant,
    open_accounts,
    operator,
    operator_client,
    with_ledger,
)

# The matrix as the docstring draws it, read back from the docstring itself.
_DOC = permissions_module.__doc__ or ""
_HEADER = ["admin", "support", "risk_analyst", "compliance_officer", "finance"]


def _documented() -> dict[Role, set[Permission]]:
    lines = _DOC.splitlines()
    header = next(line for line in lines if line.startswith("permission "))
    columns = {role: header.index(role) for role in _HEADER}
    granted: dict[Role, set[Permission]] = {Role(role): set() for role in _HEADER}
    for line in lines:
        name = line.split(" ", 1)[0]
        if name not in {permission.value for permission in Permission}:
            continue
        for role, column in columns.items():
            start = column - 2
            if "x" in line[start : column + len(role)]:
                granted[Role(role)].add(Permission(name))
    return granted


def test_the_matrix_is_the_documented_table() -> None:
    assert {role: set(found) for role, found in ROLE_PERMISSIONS.items()} == _documented()
    assert set(ROLE_PERMISSIONS) == set(Role)


@pytest.mark.parametrize(
    ("role", "permission"), list(itertools.product(list(Role), list(Permission)))
)
def test_each_role_is_allowed_exactly_its_permissions(role: Role, permission: Permission) -> None:
    expected = permission in _documented()[role]
    assert (permission in permissions_of([role])) is expected


def test_least_privilege_in_words() -> None:
    money = {Permission.LEDGER_ADJUST_REQUEST, Permission.LEDGER_ADJUST_APPROVE}
    assert not permissions_of([Role.SUPPORT]) & money, "support cannot move money"
    assert not permissions_of([Role.ADMIN]) & money, "an admin manages, it does not pay"
    assert money <= permissions_of([Role.FINANCE])
    assert not approvable_actions(permissions_of([Role.SUPPORT])), "support approves nothing"
    assert Permission.OPERATORS_MANAGE in permissions_of([Role.ADMIN])
    for role in Role:
        if role is not Role.ADMIN:
            assert Permission.OPERATORS_MANAGE not in permissions_of([role])
    for needed in ACTION_PERMISSIONS.values():
        assert needed.request != needed.approve


def test_roles_add_up() -> None:
    both = permissions_of([Role.SUPPORT, Role.FINANCE])
    assert both == ROLE_PERMISSIONS[Role.SUPPORT] | ROLE_PERMISSIONS[Role.FINANCE]
    assert permissions_of([]) == frozenset()


ASKED_ELSEWHERE = {ActionType.RISK_RULE_CHANGE, ActionType.RISK_MODEL_PROMOTION}
"""Requested by their own domain's routes (the risk rules and models APIs), not by
POST /v1/approvals."""


def _bodies(
    debit: uuid.UUID, credit: uuid.UUID, holder: str, response: str
) -> dict[ActionType, dict[str, object]]:
    return {
        ActionType.LEDGER_ADJUSTMENT: adjustment(debit, credit),
        ActionType.ACCOUNT_UNFREEZE: {
            "action_type": "account_unfreeze",
            "reason": "r",
            "payload": {"mode": "test", "account_id": format_id("acc", debit)},
        },
        ActionType.LIMIT_INCREASE: {
            "action_type": "limit_increase",
            "reason": "r",
            "payload": {
                "subject_id": holder,
                "limit": "daily",
                "asset": "USD",
                "amount": 1,
            },
        },
        ActionType.KEY_ROTATION: {
            "action_type": "key_rotation",
            "reason": "r",
            "payload": {"key_id": "tokens"},
        },
        ActionType.RISK_RESPONSE_REVERSAL: {
            "action_type": "risk_response_reversal",
            "reason": "r",
            "payload": {"response_id": response},
        },
        ActionType.TIER_LIMITS_CHANGE: {
            "action_type": "tier_limits_change",
            "reason": "r",
            "payload": {
                "mode": "test",
                "tier": 1,
                "asset": "JPY",
                "limits": {"per_transaction": 1, "daily": 2, "monthly": 3},
            },
        },
    }


@pytest.mark.parametrize("role", list(Role))
def test_each_role_over_http(database_url: str, role: Role) -> None:
    """Per role: managing operators, and asking for each sensitive action, are allowed
    exactly when the matrix says so; a refusal is a 403 problem and creates nothing."""
    tenant_id = new_tenant(database_url).tenant.id
    caller = operator(database_url, tenant_id=tenant_id, roles=[role])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    allowed = permissions_of([role])
    # Freeze the account an unfreeze would name, and make the user a limit increase names,
    # so an allowed request is a valid one.
    _freeze(database_url, tenant_id, debit)
    holder = end_user(database_url, tenant_id=tenant_id)
    response = _risk_response(database_url, tenant_id, holder)
    with operator_client(database_url) as client:
        listing = client.get("/v1/operators", headers=caller.headers)
        assert listing.status_code == (200 if Permission.OPERATORS_MANAGE in allowed else 403)
        for action_type, body in _bodies(debit, credit, holder, response).items():
            response = client.post("/v1/approvals", json=body, headers=caller.headers)
            if ACTION_PERMISSIONS[action_type].request in allowed:
                assert response.status_code == 201, (action_type, response.text)
            else:
                assert response.status_code == 403, (action_type, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["code"] == "permission_denied"
        listed = client.get("/v1/approvals", headers=caller.headers).json()["items"]
    requested = {
        ActionType(item["action_type"])
        for item in listed
        if item["requested_by"] == caller.public_id
    }
    expected = {
        a
        for a, needed in ACTION_PERMISSIONS.items()
        if needed.request in allowed and a not in ASKED_ELSEWHERE
    }
    assert requested == expected


def _freeze(database_url: str, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    from billfold.flows.approvals import ledger_tenant_id
    from billfold.identity.types import Mode
    from billfold.ledger.types import AccountStatus

    with_ledger(
        database_url,
        lambda ledger: ledger.set_account_status(
            tenant_id=ledger_tenant_id(tenant_id, Mode.TEST),
            account_id=account_id,
            status=AccountStatus.FROZEN,
        ),
    )


def _risk_response(database_url: str, tenant_id: uuid.UUID, holder: str) -> str:
    """An automated risk response in force on ``holder``: what a reversal names."""
    import time

    from billfold.kit.ids import parse_id
    from billfold.risk.cases.responses import Actor, apply_response
    from billfold.risk.types import Response
    from identity.identity_support import run_in_unit_of_work

    applied = run_in_unit_of_work(
        database_url,
        lambda session: apply_response(
            session,
            tenant_id=tenant_id,
            mode="test",
            user_id=parse_id("usr", holder),
            kind=Response.HOLD_OUTGOING,
            decision_id=None,
            actor=Actor.rule(),
            reason=None,
            lower_limits_bps=0,
            at_ns=time.time_ns(),
        ),
    )
    return format_id("rrs", applied.id)
