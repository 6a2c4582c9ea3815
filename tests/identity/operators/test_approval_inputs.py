"""An approval request's `expires_in_s` is an integer in the OpenAPI document and, like
every other integer field of the API, takes only a JSON number: a string of digits or a
boolean is 422 `validation_failed`, and nothing is stored (on both backends); the document
states its bounds as JSON Schema's `minimum` and `maximum`."""

from __future__ import annotations

from typing import Any

import pytest

from billfold.app import create_app
from billfold.identity.operators.approvals import EXPIRY_MAX_S, EXPIRY_MIN_S
from billfold.identity.operators.permissions import Role
from identity.operators.operators_support import end_user, new_tenant, operator, operator_client


def _increase(subject: str, expires_in_s: Any) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds",
        "expires_in_s": expires_in_s,
        "payload": {"subject_id": subject, "limit": "daily", "asset": "USD", "amount": 900_000},
    }


@pytest.mark.parametrize("expires_in_s", ["3600", True, "1e4", [3600]])
def test_expires_in_s_takes_only_a_json_number(database_url: str, expires_in_s: Any) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    holder = end_user(database_url, tenant_id=tenant_id)
    with operator_client(database_url) as client:
        refused = client.post(
            "/v1/approvals", json=_increase(holder, expires_in_s), headers=support.headers
        )
        listed = client.get("/v1/approvals", headers=support.headers)
        accepted = client.post(
            "/v1/approvals", json=_increase(holder, 3600), headers=support.headers
        )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "validation_failed"
    assert [error["loc"][-1] for error in refused.json()["errors"]] == ["expires_in_s"]
    assert listed.json()["items"] == []
    assert accepted.status_code == 201, accepted.text


def test_the_document_bounds_expires_in_s_as_json_schema_does() -> None:
    schemas = create_app().openapi()["components"]["schemas"]
    [integer, null] = schemas["LimitIncreaseRequest"]["properties"]["expires_in_s"]["anyOf"]
    assert null == {"type": "null"}
    assert integer == {"type": "integer", "minimum": EXPIRY_MIN_S, "maximum": EXPIRY_MAX_S}
