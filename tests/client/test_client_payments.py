"""Wallets and payments through the SDK against the real application, on both backends:
the API key side (merchants, payments, captures, refunds, disputes, splits, wallets, the
chart of accounts, KYC tiers, relaying the sandbox providers' signed notifications) and
the wallet holder's side (top-ups, withdrawals, P2P, paying a merchant, money requests),
every method once end to end, and refusals as typed errors."""

from __future__ import annotations

import pathlib
import uuid

import pytest

from billfold.client import (
    AuthenticationError,
    Billfold,
    BillfoldUser,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from billfold.client.types import NotificationReceipt
from billfold.identity.types import Scope
from client.sdk_support import USER_PASSWORD, Server, running
from payments.payments_support import process_inbound

TEST_CARD = "4242424242424242"
PAYMENTS = [Scope.PAYMENTS_READ, Scope.PAYMENTS_WRITE, Scope.WALLETS_READ, Scope.USERS_ADMIN]
IBAN = "GB33BUKB20201555555555"


def _user(server: Server, billfold: Billfold) -> tuple[str, str, BillfoldUser]:
    handle = f"u{uuid.uuid4().hex[:10]}"
    user_id = billfold.users.create(handle=handle, password=USER_PASSWORD)["id"]
    client = server.user()
    client.sign_in(identifier=handle, password=USER_PASSWORD)
    return user_id, handle, client


def _relay(server: Server, billfold: Billfold) -> list[NotificationReceipt]:
    """Relay what the sandbox sent, then run the inbound processor as the worker would."""
    receipts = [
        billfold.connectors.notify(sent.provider, body=sent.body, headers=sent.headers)
        for sent in server.sender.take()
    ]
    process_inbound(server.client, server.database_url, [r["notification_id"] for r in receipts])
    return receipts


def _available(user: BillfoldUser) -> int:
    wallets = user.payments.wallets()["items"]
    return sum(int(wallet["available"]) for wallet in wallets if wallet["currency"] == "USD")


def test_a_holder_tops_up_pays_a_merchant_and_is_refunded(database_url: str) -> None:
    with (
        running(database_url, ledger_batch_window_ms=0) as server,
        server.billfold(PAYMENTS) as billfold,
    ):
        ann_id, _, ann = _user(server, billfold)
        with ann:
            topped = ann.payments.top_up(
                amount=10_000, currency="USD", method="card", instrument=TEST_CARD
            )
            assert topped["kind"] == "top_up" and topped["instrument_last4"] == "4242"
            receipts = _relay(server, billfold)
            assert receipts and all(r["notification_id"] for r in receipts)
            assert billfold.payments.get(topped["id"])["state"] == "succeeded"
            assert _available(ann) == 10_000
            assert billfold.wallets.of_user(ann_id) == ann.payments.wallets()

            shop = billfold.merchants.create(
                legal_name="Corner Shop Ltd", category_code="5411", settlement_currency="USD"
            )
            assert billfold.merchants.get(shop["id"]) == shop
            payment = billfold.payments.create(
                merchant_id=shop["id"],
                amount=6_000,
                currency="USD",
                reference="order-1",
                metadata={"cart": "42"},
            )
            assert payment["state"] == "requires_payment"
            assert ann.payments.get(payment["id"])["amount"] == "6000"
            assert ann.payments.authorize(payment["id"])["state"] == "authorized"
            captured = billfold.payments.capture(payment["id"], amount=5_000)
            assert (captured["state"], captured["captured_amount"]) == ("captured", "5000")
            [wallet] = billfold.wallets.of_merchant(shop["id"])["items"]
            assert wallet["available"] == "5000" and wallet["owner"] == shop["id"]
            assert _available(ann) == 5_000

            refunded = billfold.payments.refund(payment["id"], amount=1_000, reason="broken")
            assert refunded["refunded_amount"] == "1000"
            assert refunded["refunds"][0]["reason"] == "broken"
            assert _available(ann) == 6_000

            opened = billfold.payments.dispute(payment["id"], amount=1_000, reason="not received")
            [dispute] = opened["disputes"]
            assert (dispute["state"], dispute["held_amount"]) == ("open", "1000")
            evidence = billfold.disputes.add_evidence(
                dispute["id"], kind="delivery", description="signed for"
            )
            assert evidence["evidence"][0]["kind"] == "delivery"
            won = billfold.disputes.resolve(dispute["id"], outcome="won")
            assert won["disputes"][0]["state"] == "won"
            with pytest.raises(ConflictError) as again:
                billfold.disputes.resolve(dispute["id"], outcome="lost")
            assert again.value.code == "invalid_state_transition"

            second = billfold.payments.create(merchant_id=shop["id"], amount=500, currency="USD")
            ann.payments.authorize(second["id"])
            assert billfold.payments.void(second["id"])["state"] == "voided"
            assert _available(ann) == 6_000
            with pytest.raises(ConflictError):
                billfold.payments.refund(second["id"])

            chart = billfold.wallets.system_accounts(currency="USD")
            assert chart["currency"] == "USD" and chart["items"]
            assert billfold.wallets.set_kyc_tier(ann_id, tier=2) == {"user_id": ann_id, "tier": 2}
            limits = billfold.wallets.limits_of(ann_id, currency="USD")
            assert (limits["tier"], limits["currency"]) == (2, "USD")
            assert [
                (item["window"], item["limit"], item["source"]) for item in limits["limits"]
            ] == [
                ("per_transaction", "1000000", "tier"),
                ("daily", "2500000", "tier"),
                ("monthly", "10000000", "tier"),
            ]
            with pytest.raises(ValidationError):
                billfold.wallets.set_kyc_tier(ann_id, tier=4)


def test_holders_send_request_and_withdraw(database_url: str) -> None:
    with (
        running(database_url, ledger_batch_window_ms=0) as server,
        server.billfold(PAYMENTS) as billfold,
    ):
        _, ann_handle, ann = _user(server, billfold)
        bob_id, bob_handle, bob = _user(server, billfold)
        with ann, bob:
            ann.payments.top_up(amount=5_000, currency="USD", method="card", instrument=TEST_CARD)
            _relay(server, billfold)
            sent = ann.payments.send(recipient=bob_handle, amount=700, currency="USD")
            assert (sent["state"], sent["payee"]) == ("succeeded", bob_id)
            assert bob.payments.get(sent["id"])["id"] == sent["id"]
            with pytest.raises(ValidationError) as poor:
                ann.payments.send(recipient=bob_handle, amount=4_500, currency="USD")
            assert poor.value.code == "insufficient_funds"
            with pytest.raises(NotFoundError) as nobody:
                ann.payments.send(recipient="nobody_here", amount=1, currency="USD")
            assert nobody.value.code == "recipient_not_found"

            asked = bob.payments.request_money(
                payer=ann_handle, amount=300, currency="USD", note="pizza"
            )
            assert asked["state"] == "pending" and asked["note"] == "pizza"
            assert ann.payments.get_money_request(asked["id"]) == asked
            with pytest.raises(ConflictError):
                bob.payments.approve_money_request(asked["id"])
            approved = ann.payments.approve_money_request(asked["id"])
            assert approved["state"] == "approved" and approved["payment_id"] is not None
            declined_one = bob.payments.request_money(payer=ann_handle, amount=5, currency="USD")
            declined = ann.payments.decline_money_request(declined_one["id"])
            assert declined["state"] == "declined"
            assert _available(bob) == 1_000

            out = bob.payments.withdraw(
                amount=400, currency="USD", method="bank_transfer", destination=IBAN
            )
            assert out["state"] == "processing"
            _relay(server, billfold)
            assert bob.payments.get(out["id"])["state"] == "succeeded"
            assert _available(bob) == 600
            with pytest.raises(ValidationError):
                bob.payments.withdraw(
                    amount=10_000, currency="USD", method="bank_transfer", destination=IBAN
                )


def test_split_rules_and_bad_notifications(database_url: str) -> None:
    with (
        running(database_url, ledger_batch_window_ms=0) as server,
        server.billfold(PAYMENTS) as billfold,
    ):
        partner = billfold.merchants.create(
            legal_name="Partner", category_code="5411", settlement_currency="USD"
        )
        rule = billfold.split_rules.create(
            name="platform cut", shares=[{"merchant_id": partner["id"], "bps": 1_000}]
        )
        assert rule["id"].startswith("spl_") and rule["levels"] == 1
        with pytest.raises(ValidationError):
            billfold.split_rules.create(name="x", shares=[{"merchant_id": partner["id"], "bps": 0}])
        with pytest.raises(NotFoundError):
            billfold.merchants.get("mer_" + "0" * 32)
        with pytest.raises(NotFoundError):
            billfold.payments.get("pay_" + "0" * 32)
        with pytest.raises(AuthenticationError) as forged:
            billfold.connectors.notify("sandbox_card", body=b"{}", headers={"X-Signature": "x"})
        assert forged.value.code == "invalid_signature"
        with pytest.raises(NotFoundError) as unknown:
            billfold.connectors.notify("nobody", body=b"{}", headers={})
        assert unknown.value.code == "unknown_provider"


def test_a_holder_pays_across_currencies(database_url: str) -> None:
    rates = str(pathlib.Path(__file__).parent.parent / "fx" / "eurofxref-sample.xml")
    with (
        running(database_url, ledger_batch_window_ms=0, fx_rates_file=rates) as server,
        server.billfold([*PAYMENTS, Scope.FX_WRITE]) as billfold,
    ):
        _, _, ann = _user(server, billfold)
        bob_id, bob_handle, bob = _user(server, billfold)
        with ann, bob:
            ann.payments.top_up(amount=5_000, currency="EUR", method="card", instrument=TEST_CARD)
            _relay(server, billfold)
            quote = billfold.fx.create_quote(
                sell_currency="EUR", buy_currency="USD", buy_amount=700
            )
            sent = ann.payments.send(
                recipient=bob_handle, amount=700, currency="USD", quote_id=quote["id"]
            )
            assert sent["fx"] is not None and sent["fx"]["quote_id"] == quote["id"]
            assert sent["payee"] == bob_id and _available(bob) == 700
            shop = billfold.merchants.create(
                legal_name="Corner Shop Ltd", category_code="5411", settlement_currency="USD"
            )
            payment = billfold.payments.create(merchant_id=shop["id"], amount=300, currency="USD")
            paid = ann.payments.authorize(payment["id"], source_currency="EUR")
            assert paid["state"] == "authorized"
            assert paid["fx"] is not None and paid["fx"]["source_currency"] == "EUR"


def test_risk_outcomes_reach_the_holder_as_states_and_typed_errors(database_url: str) -> None:
    from billfold.client import PermissionDeniedError
    from payments.risk_support import BLOCK, REVIEW, AmountDecider

    with (
        running(database_url, ledger_batch_window_ms=0) as server,
        server.billfold(PAYMENTS) as billfold,
    ):
        decider = AmountDecider()
        app = server.client.app
        app.state.payments.risk = app.state.risk = decider  # type: ignore[attr-defined]
        _, _, ann = _user(server, billfold)
        _, bob_handle, bob = _user(server, billfold)
        with ann, bob:
            ann.payments.top_up(amount=20_000, currency="USD", method="card", instrument=TEST_CARD)
            _relay(server, billfold)
            held = ann.payments.send(recipient=bob_handle, amount=REVIEW, currency="USD")
            assert held["state"] == "in_review" and held["risk_decision_id"]
            with pytest.raises(PermissionDeniedError) as refused:
                ann.payments.send(recipient=bob_handle, amount=BLOCK, currency="USD")
            assert refused.value.code == "risk_blocked"
            assert refused.value.extensions["decision_id"].startswith("rdc_")
