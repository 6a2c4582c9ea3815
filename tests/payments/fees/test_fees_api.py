"""Fee schedules over HTTP on both backends: lifecycle, precedence through the API, the
stored-schedule quoter, and bad, oversized, unauthorized and cross-tenant requests."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from billfold.identity.types import Mode, Scope
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE
from billfold.payments.fees import service
from billfold.payments.fees.types import FeeContext
from identity.identity_support import bootstrap_tenant, create_key, run_in_unit_of_work
from ledger.ledger_api_support import api, assert_problem, auth

FEES = [Scope.FEES_READ, Scope.FEES_WRITE]

CARD_EU: dict[str, Any] = {
    "name": "card_eu",
    "method": "card",
    "currency": "EUR",
    "regions": ["DE", "FR"],
    "tiers": [
        {"bps": 140, "fixed_minor": 25, "min_minor": 50, "max_minor": 500},
        {"volume_from_minor": 10_000_000, "bps": 120, "fixed_minor": 20, "min_minor": 50},
    ],
}
CATCH_ALL: dict[str, Any] = {"name": "all", "tiers": [{"bps": 50}]}


def keys(
    database_url: str, scopes: list[Scope] = FEES, mode: Mode = Mode.TEST
) -> tuple[uuid.UUID, str]:
    tenant = bootstrap_tenant(database_url, "Fees")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=scopes, mode=mode).secret
    return tenant.tenant.id, key


def create(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    body = {"name": "Standard", "rules": [CATCH_ALL, CARD_EU], **body}
    response = client.post("/v1/fee-schedules", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def preview(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    body = {"method": "card", "currency": "EUR", "amount": "10000", "region": "DE", **body}
    response = client.post("/v1/fee-quotes", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_a_schedule_is_created_read_listed_and_replaced_by_version(database_url: str) -> None:
    _, key = keys(database_url)
    with api(database_url) as client:
        created = create(client, key)
        assert created["id"].startswith("fsc_") and created["version"] == 1
        assert created["merchant_id"] is None
        assert created["rules"][1]["regions"] == ["DE", "FR"]
        got = client.get(f"/v1/fee-schedules/{created['id']}", headers=auth(key)).json()
        assert got == created
        listed = client.get("/v1/fee-schedules", headers=auth(key)).json()
        assert [item["id"] for item in listed["items"]] == [created["id"]]
        replaced = client.put(
            f"/v1/fee-schedules/{created['id']}",
            json={"name": "Cheaper", "rules": [CATCH_ALL], "version": 1},
            headers=auth(key),
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["version"] == 2 and replaced.json()["name"] == "Cheaper"
        stale = client.put(
            f"/v1/fee-schedules/{created['id']}",
            json={"name": "Stale", "rules": [CARD_EU], "version": 1},
            headers=auth(key),
        )
        assert_problem(stale, 409, "fee_schedule_version_mismatch")
        after = client.get(f"/v1/fee-schedules/{created['id']}", headers=auth(key)).json()
        assert (after["name"], after["version"]) == ("Cheaper", 2)
        again = client.post(
            "/v1/fee-schedules", json={"name": "Two", "rules": [CATCH_ALL]}, headers=auth(key)
        )
        assert_problem(again, 409, "fee_schedule_exists")


def merchant(client: TestClient, key: str) -> str:
    """A merchant of the key's tenant and mode (schedules and previews name real ones)."""
    body = {"legal_name": "Shop", "category_code": "5411", "settlement_currency": "EUR"}
    response = client.post("/v1/merchants", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    merchant_id: str = response.json()["id"]
    return merchant_id


def test_the_preview_explains_fees_with_merchant_precedence(database_url: str) -> None:
    _, key = keys(database_url, [*FEES, Scope.PAYMENTS_WRITE])
    with api(database_url) as client:
        assert preview(client, key) == {"lines": [], "total": "0", "currency": "EUR"}
        create(client, key)
        vip = {"name": "vip", "method": "card", "tiers": [{"bps": 10}]}
        shop = merchant(client, key)
        create(client, key, merchant_id=shop, name="VIP", rules=[vip])
        default = preview(client, key)
        assert default["lines"] == [
            {
                "rule": "card_eu_tier_1",
                "description": "1.40% + 0.25 EUR, min 0.50 EUR, max 5.00 EUR"
                " (monthly volume from 0.00 EUR)",
                "amount": "165",
                "currency": "EUR",
            }
        ]
        assert preview(client, key, monthly_volume="10000000")["total"] == "140"
        priced = preview(client, key, merchant_id=shop)
        assert [(line["rule"], line["amount"]) for line in priced["lines"]] == [("vip", "10")]
        fallback = preview(client, key, merchant_id=shop, method="p2p")
        assert fallback["total"] == "50"  # the merchant has no p2p rule: the tenant default


def test_the_stored_schedule_quoter_prices_inside_a_unit_of_work(database_url: str) -> None:
    tenant_id, key = keys(database_url)
    with api(database_url) as client:
        create(client, key)
    ledger_tenant = uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:test")
    movement = FeeContext(
        tenant_id=ledger_tenant,
        merchant_id=None,
        method="card",
        currency="EUR",
        amount_minor=100_000,
        region="FR",
    )
    quote = run_in_unit_of_work(database_url, lambda s: service.schedule_fee_quoter(s, movement))
    assert [(line.rule, line.amount_minor) for line in quote.lines] == [
        ("card_eu_tier_1", 500)  # 14.25 EUR, capped at the 5.00 EUR maximum
    ]


def test_bad_requests_are_refused_and_change_nothing(database_url: str) -> None:
    _, key = keys(database_url)
    bad_bodies: list[Any] = [
        {"name": "x", "rules": [{"name": "f", "tiers": [{"fixed_minor": 5}]}]},  # no currency
        {"name": "x", "rules": []},
        {"name": "x", "rules": [CATCH_ALL], "surprise": 1},
        {"name": "x", "rules": [{"name": "f", "tiers": [{"bps": "50"}]}]},
        {"name": "x", "rules": [{"name": "f", "tiers": [{"bps": 1.5}]}]},
        {"name": "x", "rules": [{"name": "f", "tiers": [{"bps": True}]}]},
        {"name": "x", "rules": [{"name": "f", "tiers": [{"bps": 20_000}]}]},
        {"name": "x", "rules": [CATCH_ALL], "merchant_id": "acc_" + "0" * 32},
        {"name": "", "rules": [CATCH_ALL]},
        [],
        "rules",
    ]
    with api(database_url) as client:
        for body in bad_bodies:
            response = client.post("/v1/fee-schedules", json=body, headers=auth(key))
            assert response.status_code in {400, 422}, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        for body in (
            {"method": "card", "currency": "EUR", "amount": "-1"},
            {"method": "card", "currency": "EUR", "amount": 100},
            {"method": "card", "currency": "ZZZ", "amount": "1"},
            {"method": "card", "currency": "EUR", "amount": "9" * 39},
            {"method": "card", "currency": "EUR", "amount": "1", "region": "germany"},
        ):
            response = client.post("/v1/fee-quotes", json=body, headers=auth(key))
            assert response.status_code == 422, (body, response.text)
        huge = {"name": "x", "rules": [CATCH_ALL], "pad": "x" * (2 * 1024 * 1024)}
        assert client.post("/v1/fee-schedules", json=huge, headers=auth(key)).status_code == 413
        too_many = {"name": "x", "rules": [{**CATCH_ALL, "name": f"r{i}"} for i in range(201)]}
        assert client.post("/v1/fee-schedules", json=too_many, headers=auth(key)).status_code == 422
        assert_problem(
            client.get("/v1/fee-schedules/fsc_nothex", headers=auth(key)), 400, "invalid_id"
        )
        assert client.get("/v1/fee-schedules", headers=auth(key)).json()["items"] == []


def test_unauthorized_and_cross_tenant_callers_are_refused(database_url: str) -> None:
    _, key = keys(database_url)
    _, intruder = keys(database_url)
    _, reader = keys(database_url, [Scope.FEES_READ])
    _, ledger_only = keys(database_url, [Scope.LEDGER_READ, Scope.LEDGER_WRITE])
    _, live = keys(database_url, FEES, Mode.LIVE)
    with api(database_url) as client:
        created = create(client, key)
        path = f"/v1/fee-schedules/{created['id']}"
        replacement = {"name": "Mine now", "rules": [CATCH_ALL]}
        assert_problem(client.get(path), 401, "unauthorized")
        assert_problem(client.put(path, json=replacement), 401, "unauthorized")
        assert_problem(client.get(path, headers=auth(intruder)), 404, "fee_schedule_not_found")
        assert_problem(
            client.put(path, json=replacement, headers=auth(intruder)),
            404,
            "fee_schedule_not_found",
        )
        assert client.get("/v1/fee-schedules", headers=auth(intruder)).json()["items"] == []
        assert_problem(client.get(path, headers=auth(live)), 404, "fee_schedule_not_found")
        assert_problem(
            client.put(path, json=replacement, headers=auth(reader)), 403, "insufficient_scope"
        )
        assert_problem(
            client.post("/v1/fee-schedules", json=replacement, headers=auth(reader)),
            403,
            "insufficient_scope",
        )
        assert_problem(client.get(path, headers=auth(ledger_only)), 403, "insufficient_scope")
        # The intruder's preview does not see the owner's schedule.
        assert preview(client, intruder)["lines"] == []
        unchanged = client.get(path, headers=auth(key)).json()
        assert unchanged == created


def test_an_amount_beyond_the_ledgers_bound_is_refused_with_the_bound(database_url: str) -> None:
    """The preview's `amount` pattern admits 39 digits; an amount is at most the ledger's
    2^127 - 1, and the refusal says so (it named an internal field before)."""
    ledger_amount_max = 2**127 - 1
    _, key = keys(database_url)
    with api(database_url) as client:
        body = {"method": "card", "currency": "EUR", "amount": str(ledger_amount_max + 1)}
        refused = assert_problem(
            client.post("/v1/fee-quotes", json=body, headers=auth(key)),
            422,
            "invalid_fee_context",
        )
        assert str(ledger_amount_max) in refused["detail"]
        body["amount"] = str(ledger_amount_max)
        priced = client.post("/v1/fee-quotes", json=body, headers=auth(key))
        assert priced.status_code == 200, priced.text
