"""Wallets over HTTP: balances, merchants, the chart of accounts, tenants kept apart."""

from __future__ import annotations

from billfold.identity.types import Mode, Scope
from identity.identity_support import bootstrap_tenant, create_key
from payments.payments_support import World, problem


def test_the_chart_of_accounts_is_opened_on_first_use_per_currency(database_url: str) -> None:
    with World(database_url) as world:
        response = world.client.get(
            "/v1/system-accounts", params={"currency": "EUR"}, headers=world.api
        )
        assert response.status_code == 200, response.text
        names = [item["name"] for item in response.json()["items"]]
        assert names == [
            "clearing:sandbox_card",
            "clearing:sandbox_bank",
            "fee_revenue",
            "fx_position",
            "suspense",
            "chargeback_losses",
        ]
        again = world.client.get(
            "/v1/system-accounts", params={"currency": "EUR"}, headers=world.api
        )
        assert again.json() == response.json()
        bad = world.client.get("/v1/system-accounts", params={"currency": "QQQ"}, headers=world.api)
        problem(bad, 422, "unsupported_currency")
        account = response.json()["items"][2]["account_id"]
        ledger_view = world.client.get(f"/v1/accounts/{account}", headers=world.api)
        assert ledger_view.status_code == 200 and ledger_view.json()["ledger"] == "EUR"


def test_wallets_show_available_pending_and_held(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        assert world.client.get("/v1/me/wallets", headers=ann.auth).json() == {"items": []}
        world.fund(ann, 1_000)
        [wallet] = world.client.get("/v1/me/wallets", headers=ann.auth).json()["items"]
        assert wallet["id"].startswith("wal_") and wallet["owner"] == ann.id
        assert (wallet["available"], wallet["pending"], wallet["held"]) == ("1000", "0", "0")
        by_api = world.client.get(f"/v1/users/{ann.id}/wallets", headers=world.api).json()
        assert by_api["items"] == [wallet]


def test_merchants_are_onboarded_and_bad_input_refused(database_url: str) -> None:
    with World(database_url) as world:
        shop = world.merchant("EUR")
        seen = world.client.get(f"/v1/merchants/{shop}", headers=world.api).json()
        assert seen["settlement_currency"] == "EUR" and seen["category_code"] == "5411"
        [wallet] = world.client.get(f"/v1/merchants/{shop}/wallets", headers=world.api).json()[
            "items"
        ]
        assert wallet["currency"] == "EUR" and wallet["available"] == "0"
        for body in (
            {"legal_name": "", "category_code": "5411", "settlement_currency": "EUR"},
            {"legal_name": "A", "category_code": "54", "settlement_currency": "EUR"},
            {"legal_name": "A", "category_code": "5411", "settlement_currency": "EUR", "x": 1},
        ):
            response = world.client.post("/v1/merchants", json=body, headers=world.api)
            problem(response, 422, "validation_failed")
        missing = world.client.get("/v1/merchants/mer_" + "0" * 32, headers=world.api)
        problem(missing, 404, "merchant_not_found")


def test_another_tenant_or_mode_sees_nothing(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        body = {"merchant_id": shop, "amount": 100, "currency": "USD"}
        payment = world.client.post("/v1/payments", json=body, headers=world.api).json()
        intruder = bootstrap_tenant(database_url, name="Intruder")
        other = create_key(database_url, tenant_id=intruder.tenant.id, scopes=list(Scope)).secret
        live = create_key(
            database_url,
            tenant_id=world.tenant_id,
            scopes=list(Scope),
            mode=Mode.LIVE,
        ).secret
        for key in (other, live):
            headers = {"Authorization": f"Bearer {key}"}
            for method, path in (
                ("GET", f"/v1/payments/{payment['id']}"),
                ("POST", f"/v1/payments/{payment['id']}/capture"),
                ("POST", f"/v1/payments/{payment['id']}/void"),
                ("POST", f"/v1/payments/{payment['id']}/refunds"),
                ("GET", f"/v1/merchants/{shop}"),
                ("GET", f"/v1/merchants/{shop}/wallets"),
                ("GET", f"/v1/users/{ann.id}/wallets"),
            ):
                response = world.client.request(method, path, json={}, headers=headers)
                assert response.status_code == 404, (method, path, response.text)
            foreign = {**body}
            response = world.client.post("/v1/payments", json=foreign, headers=headers)
            assert response.status_code == 404
        reader = create_key(
            database_url, tenant_id=world.tenant_id, scopes=[Scope.PAYMENTS_READ]
        ).secret
        refused = world.client.post(
            f"/v1/payments/{payment['id']}/void", headers={"Authorization": f"Bearer {reader}"}
        )
        problem(refused, 403, "insufficient_scope")
