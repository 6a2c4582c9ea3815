"""The fee preview (`POST /v1/fee-quotes`) prices only the currencies wallets hold: `XXX`
(ISO 4217's "no currency") and unknown codes were priced, while every wallet route refuses
them with 422 `unsupported_currency`. Now the preview answers the same problem, from the
same check, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from billfold.identity.types import Scope
from identity.identity_support import bootstrap_tenant, create_key
from ledger.ledger_api_support import api, assert_problem, auth

CATCH_ALL: dict[str, Any] = {"name": "all", "tiers": [{"bps": 100}]}
MERCHANT = {"legal_name": "Corner Shop Ltd", "category_code": "5411"}


def _key(database_url: str) -> str:
    tenant = bootstrap_tenant(database_url, "Fee quote currencies")
    scopes = [Scope.FEES_READ, Scope.FEES_WRITE, Scope.PAYMENTS_WRITE]
    return create_key(database_url, tenant_id=tenant.tenant.id, scopes=scopes).secret


def _quote(client: TestClient, key: str, currency: str, **fields: Any) -> Any:
    body = {"method": "card", "currency": currency, "amount": "10000", **fields}
    return client.post("/v1/fee-quotes", json=body, headers=auth(key))


@pytest.mark.parametrize("currency", ["XXX", "XXZ", "ZZ"])
def test_a_currency_no_wallet_holds_is_refused_as_the_wallet_routes_refuse_it(
    database_url: str, currency: str
) -> None:
    key = _key(database_url)
    with api(database_url) as client:
        created = client.post(
            "/v1/fee-schedules", json={"name": "Standard", "rules": [CATCH_ALL]}, headers=auth(key)
        )
        assert created.status_code == 201, created.text
        quoted = _quote(client, key, currency)
        merchant = client.post(
            "/v1/merchants",
            json={**MERCHANT, "settlement_currency": currency},
            headers=auth(key),
        )
    wallets = assert_problem(merchant, 422, "unsupported_currency")
    fees = assert_problem(quoted, 422, "unsupported_currency")
    same = ("type", "title", "status", "code", "detail", "currency")
    assert {name: fees[name] for name in same} == {name: wallets[name] for name in same}
    assert fees["currency"] == currency


def test_the_currency_is_checked_before_the_merchant(database_url: str) -> None:
    """A preview for an unknown merchant in `XXX` is refused for its currency (as a wallet
    route refuses a request it cannot price), before any lookup."""
    key = _key(database_url)
    with api(database_url) as client:
        quoted = _quote(client, key, "XXX", merchant_id="mer_" + "0" * 32)
    assert_problem(quoted, 422, "unsupported_currency")


@pytest.mark.parametrize(("currency", "fee"), [("EUR", "100"), ("JPY", "100"), ("XAU", "100")])
def test_currencies_wallets_hold_are_still_priced(
    database_url: str, currency: str, fee: str
) -> None:
    """Including those with no minor unit (XAU), which wallets hold in whole units."""
    key = _key(database_url)
    with api(database_url) as client:
        created = client.post(
            "/v1/fee-schedules", json={"name": "Standard", "rules": [CATCH_ALL]}, headers=auth(key)
        )
        assert created.status_code == 201, created.text
        quoted = _quote(client, key, currency)
    assert quoted.status_code == 200, quoted.text
    assert (quoted.json()["total"], quoted.json()["currency"]) == (fee, currency)
