"""FX over HTTP on both backends: rates, quotes, conversions and settings, and bad,
oversized, unauthorized, cross-tenant and cross-mode requests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from billfold.identity.types import Mode, Scope
from billfold.kit.clock import ManualClock
from identity.identity_support import bootstrap_tenant, create_key
from ledger.ledger_api_support import (
    api,
    assert_problem,
    auth,
    balances,
    open_account,
    post_transfer,
    transfer,
)

SAMPLE = str(Path(__file__).with_name("eurofxref-sample.xml"))
EVERYTHING = [Scope.FX_READ, Scope.FX_WRITE, Scope.LEDGER_READ, Scope.LEDGER_WRITE]


class Tenant:
    def __init__(self, database_url: str, name: str = "FX") -> None:
        bootstrapped = bootstrap_tenant(database_url, name)
        tenant_id = bootstrapped.tenant.id

        def key(scopes: list[Scope], mode: Mode = Mode.TEST) -> str:
            return create_key(database_url, tenant_id=tenant_id, scopes=scopes, mode=mode).secret

        self.writer = key(EVERYTHING)
        self.reader = key([Scope.FX_READ])
        self.live = key(EVERYTHING, Mode.LIVE)
        self.admin = bootstrapped.test_key.secret


def wallets(client: TestClient, key: str, *, funded_eur: int = 100_00) -> tuple[str, str]:
    eur = open_account(
        client, key, ledger="EUR", flags=["debits_must_not_exceed_credits"], owner_ref="u1"
    )
    usd = open_account(
        client, key, ledger="USD", flags=["debits_must_not_exceed_credits"], owner_ref="u1"
    )
    bank = open_account(client, key, ledger="EUR")
    post_transfer(client, key, transfer(bank["id"], eur["id"], str(funded_eur), ledger="EUR"))
    return eur["id"], usd["id"]


def quote(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    body = {"sell_currency": "EUR", "buy_currency": "USD", "sell_amount": "5000", **body}
    response = client.post("/v1/fx/quotes", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def convert(client: TestClient, key: str, quote_id: str, sell: str, buy: str) -> Any:
    body = {"quote_id": quote_id, "sell_account_id": sell, "buy_account_id": buy}
    return client.post("/v1/fx/conversions", json=body, headers=auth(key))


def net(client: TestClient, key: str, account: str) -> int:
    found = balances(client, key, account)
    return int(found["credits_posted"]) - int(found["debits_posted"])


def test_quote_then_convert_once(database_url: str) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE) as client:
        eur, usd = wallets(client, tenant.writer)
        rates = client.get("/v1/fx/rates", headers=auth(tenant.reader)).json()
        assert (rates["base"], rates["date"], rates["rates"]["USD"]) == (
            "EUR",
            "2023-12-29",
            "1.1050",
        )
        created = quote(client, tenant.writer)
        assert created["id"].startswith("fxq_")
        assert (created["sell_amount"], created["buy_amount"]) == ("5000", "5497")
        assert (created["rate"], created["mid_rate"], created["spread_bps"]) == (
            "1.09947500000",
            "1.10500000000",
            50,
        )
        assert created["status"] == "open" and created["fixed_side"] == "sell"
        converted = convert(client, tenant.writer, created["id"], eur, usd)
        assert converted.status_code == 200, converted.text
        body = converted.json()
        assert body["quote"]["status"] == "used"
        assert (body["quote"]["sell_account_id"], body["quote"]["buy_account_id"]) == (eur, usd)
        assert body["sell_transfer_id"].startswith("txf_")
        leg = client.get(f"/v1/transfers/{body['buy_transfer_id']}", headers=auth(tenant.writer))
        assert leg.json()["amount"] == "5497"
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (5000, 5497)
        again = convert(client, tenant.writer, created["id"], eur, usd)
        assert_problem(again, 409, "fx_quote_already_used")
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (5000, 5497)
        fetched = client.get(f"/v1/fx/quotes/{created['id']}", headers=auth(tenant.reader)).json()
        assert fetched["status"] == "used"
        listed = client.get("/v1/fx/quotes", headers=auth(tenant.reader)).json()
        assert [item["id"] for item in listed["items"]] == [created["id"]]


def test_expired_quotes_and_insufficient_funds_are_refused(database_url: str) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE, fx_quote_ttl_s=30) as client:
        clock = ManualClock()
        client.app.state.fx_clock = clock  # type: ignore[attr-defined]
        eur, usd = wallets(client, tenant.writer)
        stale = quote(client, tenant.writer)
        clock.advance(seconds=30)
        assert (
            client.get(f"/v1/fx/quotes/{stale['id']}", headers=auth(tenant.reader)).json()["status"]
            == "expired"
        )
        assert_problem(
            convert(client, tenant.writer, stale["id"], eur, usd), 409, "fx_quote_expired"
        )
        too_big = quote(client, tenant.writer, sell_amount="10001")
        assert_problem(
            convert(client, tenant.writer, too_big["id"], eur, usd), 422, "fx_insufficient_funds"
        )
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (100_00, 0)


def test_the_spread_is_a_tenant_setting(database_url: str) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE, fx_spread_bps_default=25) as client:
        default = client.get("/v1/fx/settings", headers=auth(tenant.reader)).json()
        assert default == {"spread_bps": 25, "quote_ttl_s": 30, "custom": False}
        assert quote(client, tenant.writer)["spread_bps"] == 25
        refused = client.put("/v1/fx/settings", json={"spread_bps": 0}, headers=auth(tenant.writer))
        assert_problem(refused, 403, "insufficient_scope")
        for bad in ({"spread_bps": -1}, {"spread_bps": 2001}, {"spread_bps": "5"}, {}):
            response = client.put("/v1/fx/settings", json=bad, headers=auth(tenant.admin))
            assert_problem(response, 422, "validation_failed")
        changed = client.put("/v1/fx/settings", json={"spread_bps": 0}, headers=auth(tenant.admin))
        assert changed.json() == {"spread_bps": 0, "quote_ttl_s": 30, "custom": True}
        assert quote(client, tenant.writer)["buy_amount"] == "5525"
        assert client.get("/v1/fx/settings", headers=auth(tenant.live)).json()["spread_bps"] == 25


def test_without_a_rates_file_quotes_are_unavailable(database_url: str) -> None:
    tenant = Tenant(database_url)
    with api(database_url) as client:
        response = client.post(
            "/v1/fx/quotes",
            json={"sell_currency": "EUR", "buy_currency": "USD", "sell_amount": "100"},
            headers=auth(tenant.writer),
        )
        assert_problem(response, 503, "fx_rates_unavailable")
        assert client.get("/v1/fx/quotes", headers=auth(tenant.reader)).json()["items"] == []


def test_bad_requests_are_refused_and_change_nothing(database_url: str) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE) as client:
        eur, usd = wallets(client, tenant.writer)
        base = {"sell_currency": "EUR", "buy_currency": "USD"}
        for body, status, code in [
            ({**base}, 422, "validation_failed"),
            ({**base, "sell_amount": "1", "buy_amount": "1"}, 422, "validation_failed"),
            ({**base, "sell_amount": "0"}, 422, "validation_failed"),
            ({**base, "sell_amount": "-5"}, 422, "validation_failed"),
            ({**base, "sell_amount": "1.5"}, 422, "validation_failed"),
            ({**base, "sell_amount": 100}, 422, "validation_failed"),
            ({**base, "sell_amount": "9" * 19}, 422, "validation_failed"),
            ({**base, "sell_amount": "100", "extra": 1}, 422, "validation_failed"),
            (
                {"sell_currency": "eur", "buy_currency": "USD", "sell_amount": "1"},
                422,
                "validation_failed",
            ),
            (
                {"sell_currency": "EUR", "buy_currency": "EUR", "sell_amount": "1"},
                422,
                "fx_same_currency",
            ),
            (
                {"sell_currency": "EUR", "buy_currency": "XAU", "sell_amount": "100"},
                422,
                "fx_unknown_currency_pair",
            ),
            (
                {"sell_currency": "EUR", "buy_currency": "ABC", "sell_amount": "100"},
                422,
                "fx_unknown_currency_pair",
            ),
            (
                {"sell_currency": "JPY", "buy_currency": "EUR", "sell_amount": "1"},
                422,
                "fx_amount_too_small",
            ),
        ]:
            response = client.post("/v1/fx/quotes", json=body, headers=auth(tenant.writer))
            assert_problem(response, status, code)
        huge = {**base, "sell_amount": "1", "pad": "x" * (2 * 1024 * 1024)}
        assert (
            client.post("/v1/fx/quotes", json=huge, headers=auth(tenant.writer)).status_code == 413
        )
        assert_problem(
            client.get("/v1/fx/quotes/fxq_123", headers=auth(tenant.reader)), 400, "invalid_id"
        )
        missing = f"fxq_{uuid.uuid4().hex}"
        assert_problem(
            client.get(f"/v1/fx/quotes/{missing}", headers=auth(tenant.reader)),
            404,
            "fx_quote_not_found",
        )
        created = quote(client, tenant.writer)
        assert_problem(convert(client, tenant.writer, "nope", eur, usd), 400, "invalid_id")
        assert_problem(
            convert(client, tenant.writer, created["id"], eur, "acc_x"), 400, "invalid_id"
        )
        assert_problem(
            convert(client, tenant.writer, created["id"], usd, eur), 422, "fx_invalid_accounts"
        )
        assert_problem(convert(client, tenant.writer, missing, eur, usd), 404, "fx_quote_not_found")
        response = client.post(
            "/v1/fx/conversions", json={"quote_id": created["id"]}, headers=auth(tenant.writer)
        )
        assert_problem(response, 422, "validation_failed")
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (100_00, 0)
        assert (
            client.get(f"/v1/fx/quotes/{created['id']}", headers=auth(tenant.reader)).json()[
                "status"
            ]
            == "open"
        )


def test_unauthorized_cross_tenant_and_cross_mode_callers_are_refused(database_url: str) -> None:
    owner = Tenant(database_url, "Owner")
    intruder = Tenant(database_url, "Intruder")
    with api(database_url, fx_rates_file=SAMPLE) as client:
        eur, usd = wallets(client, owner.writer)
        created = quote(client, owner.writer)
        path = f"/v1/fx/quotes/{created['id']}"
        assert_problem(client.get(path), 401, "unauthorized")
        assert_problem(client.post("/v1/fx/quotes", json={}), 401, "unauthorized")
        assert_problem(
            convert(client, "bf_test_nope", created["id"], eur, usd), 401, "unauthorized"
        )
        assert_problem(
            client.post(
                "/v1/fx/quotes",
                json={"sell_currency": "EUR", "buy_currency": "USD", "sell_amount": "1"},
                headers=auth(owner.reader),
            ),
            403,
            "insufficient_scope",
        )
        assert_problem(
            convert(client, owner.reader, created["id"], eur, usd), 403, "insufficient_scope"
        )
        assert_problem(client.get(path, headers=auth(owner.admin)), 403, "insufficient_scope")
        for key in (intruder.writer, owner.live):
            assert_problem(client.get(path, headers=auth(key)), 404, "fx_quote_not_found")
            assert_problem(convert(client, key, created["id"], eur, usd), 404, "fx_quote_not_found")
            assert client.get("/v1/fx/quotes", headers=auth(key)).json()["items"] == []
        # The intruder's own quote cannot reach the owner's accounts either.
        theirs = quote(client, intruder.writer)
        assert_problem(
            convert(client, intruder.writer, theirs["id"], eur, usd), 422, "fx_invalid_accounts"
        )
        assert (net(client, owner.writer, eur), net(client, owner.writer, usd)) == (100_00, 0)
        assert client.get(path, headers=auth(owner.reader)).json()["status"] == "open"
