"""The rules and decisions API: who may write and read rules, four eyes on enforcing
versions and on loosening an enforcing rule (a shadow version replacing it, a disable), the
audit trail, tenant isolation, and decisions explained."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.service import RiskEngine
from billfold.risk.types import Action
from identity.identity_support import create_key, run_in_unit_of_work
from identity.operators.operators_support import new_tenant, operator, operator_client
from risk.risk_support import FixedFeatures, add_active_rule, movement, run


def _rule(name: str = "big-new-device", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "mode": "test",
        "expression": "amount_major > 1000.0 && new_device",
        "action": "review",
        "score": 400,
        "reason": "A large amount from a new device",
        "enforcement": "shadow",
        **overrides,
    }


def _audit_actions(database_url: str, tenant_id: uuid.UUID) -> list[tuple[str, str | None]]:
    async def read(session: Any) -> list[tuple[str, str | None]]:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.actor_id)
            .where(AuditEntry.tenant_id == tenant_id, AuditEntry.action.like("risk.%"))
            .order_by(AuditEntry.sequence)
        )
        return [(action, actor) for action, actor in rows]

    return run_in_unit_of_work(database_url, read)


def test_a_shadow_rule_is_active_at_once_and_audited(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        created = client.post("/v1/risk/rules", json=_rule(), headers=analyst.headers)
        assert created.status_code == 201, created.text
        rule = created.json()
        assert rule["id"].startswith("rrl_") and rule["current_version"] == 1
        [version] = rule["versions"]
        assert (version["state"], version["approval_id"]) == ("active", None)
        assert version["activated_by"] == analyst.public_id
        again = client.post("/v1/risk/rules", json=_rule(), headers=analyst.headers)
        assert again.status_code == 409 and again.json()["code"] == "rule_name_taken"
        listed = client.get("/v1/risk/rules", headers=analyst.headers).json()
        assert [item["id"] for item in listed["items"]] == [rule["id"]]
    assert _audit_actions(database_url, tenant_id) == [("risk.rule.created", analyst.public_id)]


def test_an_enforcing_version_takes_effect_only_when_another_operator_approves(
    database_url: str,
) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    author = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    approver = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    with operator_client(database_url) as client:
        created = client.post(
            "/v1/risk/rules", json=_rule(enforcement="enforcing"), headers=author.headers
        ).json()
        [pending] = created["versions"]
        assert pending["state"] == "pending_approval" and created["current_version"] is None
        approval_id = pending["approval_id"]
        own = client.post(f"/v1/approvals/{approval_id}/approve", json={}, headers=author.headers)
        assert own.status_code == 403, own.text
        assert own.json()["code"] == "self_approval_forbidden"
        still = client.get(f"/v1/risk/rules/{created['id']}", headers=author.headers).json()
        assert still["versions"][0]["state"] == "pending_approval"
        approved = client.post(
            f"/v1/approvals/{approval_id}/approve", json={}, headers=approver.headers
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "executed"
        assert approved.json()["result"]["ruleset_version"] == 1
        rule = client.get(f"/v1/risk/rules/{created['id']}", headers=approver.headers).json()
        assert rule["current_version"] == 1
        assert rule["versions"][0]["state"] == "active"
        assert rule["versions"][0]["activated_by"] == approver.public_id
    assert _audit_actions(database_url, tenant_id) == [
        ("risk.rule.created", author.public_id),
        ("risk.rule.activated", approver.public_id),
    ]


def _enforcing_rule(client: Any, author: Any, approver: Any) -> str:
    """A rule whose active version (2) enforces: shadow v1, then enforcing v2 approved."""
    rule_id = str(client.post("/v1/risk/rules", json=_rule(), headers=author.headers).json()["id"])
    enforcing = client.post(
        f"/v1/risk/rules/{rule_id}/versions",
        json={**_version_body(), "enforcement": "enforcing", "action": "block"},
        headers=author.headers,
    ).json()
    assert [v["state"] for v in enforcing["versions"]] == ["pending_approval", "active"]
    assert enforcing["current_version"] == 1, "the shadow version stays until approval"
    approval_id = enforcing["versions"][0]["approval_id"]
    client.post(f"/v1/approvals/{approval_id}/approve", json={}, headers=approver.headers)
    rule = client.get(f"/v1/risk/rules/{rule_id}", headers=author.headers).json()
    assert [v["state"] for v in rule["versions"]] == ["active", "superseded"]
    return rule_id


def _version_body() -> dict[str, Any]:
    return {k: v for k, v in _rule().items() if k not in {"name", "mode"}}


def test_a_rule_whose_active_version_is_shadow_is_disabled_at_once(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        rule_id = client.post("/v1/risk/rules", json=_rule(), headers=analyst.headers).json()["id"]
        pending = client.post(
            f"/v1/risk/rules/{rule_id}/versions",
            json={**_version_body(), "enforcement": "enforcing"},
            headers=analyst.headers,
        ).json()
        assert [v["state"] for v in pending["versions"]] == ["pending_approval", "active"]
        disabled = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["current_version"] is None
        assert disabled.json()["disable_approval_id"] is None
        assert [v["state"] for v in disabled.json()["versions"]] == ["rejected", "disabled"]
        twice = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        assert twice.status_code == 409 and twice.json()["code"] == "rule_already_disabled"
    assert [action for action, _ in _audit_actions(database_url, tenant_id)] == [
        "risk.rule.created",
        "risk.rule.version_created",
        "risk.rule.disabled",
    ]


def test_loosening_an_enforcing_rule_needs_a_second_operator(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    second = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        rule_id = _enforcing_rule(client, analyst, second)
        # A shadow version would stop the enforcement: it waits, the enforcing one stays.
        shadow = client.post(
            f"/v1/risk/rules/{rule_id}/versions", json=_version_body(), headers=analyst.headers
        )
        assert shadow.status_code == 201, shadow.text
        assert shadow.json()["current_version"] == 2
        assert shadow.json()["versions"][0]["state"] == "pending_approval"
        assert shadow.json()["versions"][0]["approval_id"] is not None
        # So does disabling.
        asked = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        assert asked.status_code == 202, asked.text
        approval_id = asked.json()["disable_approval_id"]
        assert approval_id.startswith("apr_") and asked.json()["current_version"] == 2
        assert [v["state"] for v in asked.json()["versions"]] == [
            "pending_approval",
            "active",
            "superseded",
        ]
        again = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        assert again.status_code == 409 and again.json()["code"] == "rule_change_pending"
        own = client.post(f"/v1/approvals/{approval_id}/approve", json={}, headers=analyst.headers)
        assert own.status_code == 403 and own.json()["code"] == "self_approval_forbidden"
        still = client.get(f"/v1/risk/rules/{rule_id}", headers=analyst.headers).json()
        assert still["current_version"] == 2 and still["versions"][1]["state"] == "active"
        approved = client.post(
            f"/v1/approvals/{approval_id}/approve", json={}, headers=second.headers
        ).json()
        assert approved["status"] == "executed", approved
        assert approved["result"]["ruleset_version"] == 3
        rule = client.get(f"/v1/risk/rules/{rule_id}", headers=analyst.headers).json()
        assert rule["current_version"] is None
        assert [v["state"] for v in rule["versions"]] == ["rejected", "disabled", "superseded"]
    assert _audit_actions(database_url, tenant_id) == [
        ("risk.rule.created", analyst.public_id),
        ("risk.rule.version_created", analyst.public_id),
        ("risk.rule.activated", second.public_id),
        ("risk.rule.version_created", analyst.public_id),
        ("risk.rule.disable_requested", analyst.public_id),
        ("risk.rule.disabled", second.public_id),
    ]


def test_a_disable_approved_after_another_version_took_over_changes_nothing(
    database_url: str,
) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    second = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        rule_id = _enforcing_rule(client, analyst, second)
        disable = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        stale = disable.json()["disable_approval_id"]
        newer = client.post(
            f"/v1/risk/rules/{rule_id}/versions",
            json={**_version_body(), "enforcement": "enforcing", "action": "review"},
            headers=analyst.headers,
        ).json()
        activation = newer["versions"][0]["approval_id"]
        client.post(f"/v1/approvals/{activation}/approve", json={}, headers=second.headers)
        late = client.post(f"/v1/approvals/{stale}/approve", json={}, headers=second.headers)
        assert late.json()["status"] == "failed", late.text
        assert late.json()["result"]["failure"] == "version_superseded"
        rule = client.get(f"/v1/risk/rules/{rule_id}", headers=analyst.headers).json()
        assert rule["current_version"] == 3 and rule["versions"][0]["state"] == "active"
        # The stale request is settled: disabling can be asked for again.
        asked = client.post(f"/v1/risk/rules/{rule_id}/disable", headers=analyst.headers)
        assert asked.status_code == 202 and asked.json()["disable_approval_id"] != stale


def test_an_approval_executed_after_a_newer_version_changes_nothing(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    second = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        created = client.post(
            "/v1/risk/rules", json=_rule(enforcement="enforcing"), headers=analyst.headers
        ).json()
        stale_approval = created["versions"][0]["approval_id"]
        body = {k: v for k, v in _rule().items() if k not in {"name", "mode"}}
        client.post(f"/v1/risk/rules/{created['id']}/versions", json=body, headers=analyst.headers)
        late = client.post(
            f"/v1/approvals/{stale_approval}/approve", json={}, headers=second.headers
        ).json()
        assert late["status"] == "failed" and late["result"]["failure"] == "version_rejected"
        rule = client.get(f"/v1/risk/rules/{created['id']}", headers=analyst.headers).json()
        assert [v["state"] for v in rule["versions"]] == ["active", "rejected"]


def test_a_rule_change_cannot_be_asked_for_through_the_approvals_route(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        created = client.post(
            "/v1/risk/rules", json=_rule(enforcement="enforcing"), headers=analyst.headers
        ).json()
        for version in (1, 2):
            asked = client.post(
                "/v1/approvals",
                json={
                    "action_type": "risk_rule_change",
                    "reason": "again",
                    "payload": {"rule_id": created["id"], "version": version},
                },
                headers=analyst.headers,
            )
            # Not a type that route takes: a rule change is asked for by the rules API.
            assert asked.status_code == 422, asked.text
            assert asked.json()["code"] == "validation_failed"


def test_an_invalid_expression_is_refused_and_stores_nothing(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        hidden_macro = r"r'\' == '' || [1].exists(amount, amount > 0) || '' == ''"
        for expression in ("amount >", "velocity > 1", "amount + 1", hidden_macro):
            refused = client.post(
                "/v1/risk/rules", json=_rule(expression=expression), headers=analyst.headers
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "invalid_rule"
            assert refused.headers["content-type"] == "application/problem+json"
        assert client.get("/v1/risk/rules", headers=analyst.headers).json()["items"] == []


def test_a_dry_run_evaluates_on_the_given_features(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    expression = "amount_major > 1000.0 && new_device"
    with operator_client(database_url) as client:

        def dry(features: dict[str, Any]) -> dict[str, Any]:
            answer = client.post(
                "/v1/risk/rules/evaluate",
                json={"expression": expression, "features": features},
                headers=analyst.headers,
            )
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        assert dry({"amount_major": 1500.0, "new_device": True}) == {"matched": True, "error": None}
        assert dry({"amount_major": 15.0, "new_device": True})["matched"] is False
        failed = dry({"new_device": True})
        assert failed["matched"] is False and failed["error"]


def test_who_may_write_and_read_rules(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    compliance = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    with operator_client(database_url) as client:
        rule_id = client.post("/v1/risk/rules", json=_rule(), headers=analyst.headers).json()["id"]
        for caller in (support, compliance):
            written = client.post("/v1/risk/rules", json=_rule("x"), headers=caller.headers)
            assert written.status_code == 403 and written.json()["code"] == "permission_denied"
        assert client.get("/v1/risk/rules", headers=support.headers).status_code == 403
        assert (
            client.get(f"/v1/risk/rules/{rule_id}", headers=compliance.headers).status_code == 200
        )
        anonymous = client.get(f"/v1/risk/rules/{rule_id}")
        assert anonymous.status_code == 401


def test_another_tenants_rule_is_not_found(database_url: str) -> None:
    owner_tenant = new_tenant(database_url).tenant.id
    other_tenant = new_tenant(database_url).tenant.id
    owner = operator(database_url, tenant_id=owner_tenant, roles=[Role.RISK_ANALYST])
    intruder = operator(database_url, tenant_id=other_tenant, roles=[Role.RISK_ANALYST])
    body = {k: v for k, v in _rule().items() if k not in {"name", "mode"}}
    with operator_client(database_url) as client:
        rule_id = client.post("/v1/risk/rules", json=_rule(), headers=owner.headers).json()["id"]
        for method, path, json in (
            ("GET", f"/v1/risk/rules/{rule_id}", None),
            ("POST", f"/v1/risk/rules/{rule_id}/versions", body),
            ("POST", f"/v1/risk/rules/{rule_id}/disable", None),
        ):
            answer = client.request(method, path, json=json, headers=intruder.headers)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["code"] == "rule_not_found"
        assert client.get("/v1/risk/rules", headers=intruder.headers).json()["items"] == []


def _decisions(database_url: str, tenant_id: uuid.UUID, actions: list[Action]) -> list[str]:
    """Decide one movement per action (a rule per movement amount), in test mode."""
    engine = RiskEngine(FixedFeatures())

    async def go(unit_of_work: UnitOfWork) -> list[str]:
        async with unit_of_work.begin() as session:
            for index, action in enumerate(actions):
                await add_active_rule(
                    session,
                    tenant_id=tenant_id,
                    expression=f"amount == {index + 1}",
                    action=action,
                    shadow=index % 2 == 1,
                )
        ids = []
        for index in range(len(actions)):
            async with unit_of_work.begin() as session:
                decision = await engine.decide(session, movement(tenant_id, amount=index + 1))
                ids.append(format_id("rdc", decision.id))
        return ids

    return run(database_url, go)


def test_decisions_are_read_with_risk_read_and_explained(database_url: str) -> None:
    tenancy = new_tenant(database_url)
    tenant_id = tenancy.tenant.id
    ids = _decisions(database_url, tenant_id, [Action.BLOCK, Action.REVIEW, Action.CHALLENGE])
    reader = create_key(database_url, tenant_id=tenant_id, scopes=[Scope.RISK_READ]).secret
    other = create_key(database_url, tenant_id=tenant_id, scopes=[Scope.LEDGER_READ]).secret
    live = create_key(
        database_url, tenant_id=tenant_id, scopes=[Scope.RISK_READ], mode=Mode.LIVE
    ).secret
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    with operator_client(database_url) as client:
        as_reader = {"Authorization": f"Bearer {reader}"}
        listed = client.get("/v1/risk/decisions", headers=as_reader).json()
        assert [item["id"] for item in listed["items"]] == ids[::-1], "newest first"
        blocked = client.get("/v1/risk/decisions?action=block", headers=as_reader).json()
        assert [item["id"] for item in blocked["items"]] == [ids[0]]
        first = client.get("/v1/risk/decisions?limit=1", headers=as_reader).json()
        rest = client.get(
            f"/v1/risk/decisions?limit=5&cursor={first['next_cursor']}", headers=as_reader
        ).json()
        assert [i["id"] for i in first["items"] + rest["items"]] == ids[::-1]
        explained = client.get(f"/v1/risk/decisions/{ids[1]}", headers=as_reader).json()
        assert explained["action"] == "allow", "the review rule of movement 2 is a shadow rule"
        assert [(hit["action"], hit["shadow"]) for hit in explained["hits"]] == [("review", True)]
        assert explained["features"]["amount"] == 2 and explained["reasons"] == []
        assert explained["ruleset_version"] == 3
        denied = client.get("/v1/risk/decisions", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403 and denied.json()["code"] == "insufficient_scope"
        live_view = client.get(
            f"/v1/risk/decisions/{ids[0]}", headers={"Authorization": f"Bearer {live}"}
        )
        assert live_view.status_code == 404, "a test-mode decision is not live"
        by_analyst = client.get("/v1/risk/decisions?mode=test", headers=analyst.headers).json()
        assert len(by_analyst["items"]) == 3
        assert client.get("/v1/risk/decisions", headers=analyst.headers).json()["items"] == []
        assert client.get("/v1/risk/decisions", headers=support.headers).status_code == 403


def test_another_tenants_decision_is_not_found(database_url: str) -> None:
    owner = new_tenant(database_url).tenant.id
    intruder = new_tenant(database_url).tenant.id
    [decision_id] = _decisions(database_url, owner, [Action.BLOCK])
    key = create_key(database_url, tenant_id=intruder, scopes=list(Scope)).secret
    with operator_client(database_url) as client:
        answer = client.get(
            f"/v1/risk/decisions/{decision_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 404 and answer.json()["code"] == "decision_not_found"


def test_decisions_read_with_an_api_key_say_where_the_key_stands(database_url: str) -> None:
    """Every counted answer carries the rate-limit fields; the decisions routes, which take
    an operator session or an API key, sent them to keys only with a problem."""
    tenant_id = new_tenant(database_url).tenant.id
    [decision_id] = _decisions(database_url, tenant_id, [Action.BLOCK])
    key = create_key(database_url, tenant_id=tenant_id, scopes=[Scope.RISK_READ]).secret
    with operator_client(database_url) as client:
        for path in ("/v1/risk/decisions", f"/v1/risk/decisions/{decision_id}"):
            answer = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["RateLimit-Policy"].startswith('"credential";q=')
            assert answer.headers["RateLimit"].startswith('"credential";r=')
