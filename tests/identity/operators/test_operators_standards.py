"""Operator sign-in against the standards an outside client codes to: every 401 names its
scheme in `WWW-Authenticate` (RFC 9110 section 15.5.2), a refused sign-in included."""

from __future__ import annotations

import uuid

from billfold.identity.operators.permissions import Role
from billfold.kit.ids import format_id
from identity.operators.operators_support import (
    PASSWORD,
    create_operator,
    new_tenant,
    operator_client,
)


def test_a_refused_sign_in_names_its_scheme(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    created = create_operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    with operator_client(database_url) as client:
        responses = [
            client.post(
                "/v1/operators/login",
                json={"tenant_id": format_id("ten", tenant), "email": email, "password": password},
            )
            for tenant, email, password in (
                (tenant_id, created.operator.email, "wrong password!"),
                (tenant_id, "nobody@example.com", PASSWORD),
                (uuid.uuid4(), created.operator.email, PASSWORD),
            )
        ]
    for response in responses:
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "login_failed"
        assert response.headers["www-authenticate"] == 'Bearer realm="billfold-operators"'
