"""Payments. `Payments`, `Disputes` and `SplitRules` are for API keys (`payments:write`,
`payments:read`); `MyPayments` is the wallet holder's side (`BillfoldUser.payments`).
Amounts are integers in minor units; answers carry them as decimal strings.

Every money movement passes the server's risk decision: a payment (or refund) held for
review comes back with `state` `in_review` (HTTP 202); a blocked one raises
`PermissionDeniedError` with `code` `risk_blocked` (`extensions["decision_id"]`); a
challenged one raises `code` `step_up_required` with the `amount`, `currency` and `payee`
to step up for (`BillfoldUser.step_ups`), then retry with `step_up_token`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, cast

from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    Dispute,
    MoneyRequest,
    NotificationReceipt,
    Payment,
    SplitRule,
    WalletList,
)

__all__ = ["Connectors", "Disputes", "MyPayments", "Payments", "SplitRules"]

Method = Literal["card", "bank_transfer"]


class Payments(Resource):
    def create(
        self,
        *,
        merchant_id: str,
        amount: int,
        currency: str,
        reference: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expires_in_s: int | None = None,
        capture: Literal["automatic", "manual"] = "manual",
        split_rule_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """A merchant payment awaiting its payer (`BillfoldUser.payments.authorize`)."""
        body = without_none(
            {
                "merchant_id": merchant_id,
                "amount": amount,
                "currency": currency,
                "reference": reference,
                "metadata": None if metadata is None else dict(metadata),
                "expires_in_s": expires_in_s,
                "capture": capture,
                "split_rule_id": split_rule_id,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/payments", json=body, idempotency_key=idempotency_key
        )
        return cast(Payment, answer)

    def get(self, payment_id: str) -> Payment:
        path = f"/v1/payments/{path_id(payment_id)}"
        return cast(Payment, self._transport.request("GET", path))

    def capture(
        self, payment_id: str, *, amount: int | None = None, idempotency_key: str | None = None
    ) -> Payment:
        """Capture all of the hold, or `amount` of it."""
        path = f"/v1/payments/{path_id(payment_id)}/capture"
        body = without_none({"amount": amount})
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Payment, answer)

    def void(self, payment_id: str, *, idempotency_key: str | None = None) -> Payment:
        """Release the payer's hold."""
        path = f"/v1/payments/{path_id(payment_id)}/void"
        return cast(Payment, self._transport.request("POST", path, idempotency_key=idempotency_key))

    def refund(
        self,
        payment_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Refund all that is captured, or `amount` of it."""
        path = f"/v1/payments/{path_id(payment_id)}/refunds"
        body = without_none({"amount": amount, "reason": reason})
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Payment, answer)

    def dispute(
        self,
        payment_id: str,
        *,
        amount: int,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Open a dispute on `amount` of the payment; the answer lists it in `disputes`."""
        path = f"/v1/payments/{path_id(payment_id)}/disputes"
        body = without_none({"amount": amount, "reason": reason})
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Payment, answer)


class Disputes(Resource):
    def add_evidence(
        self,
        dispute_id: str,
        *,
        kind: Literal["receipt", "delivery", "correspondence", "other"],
        description: str,
        idempotency_key: str | None = None,
    ) -> Dispute:
        path = f"/v1/disputes/{path_id(dispute_id)}/evidence"
        body = {"kind": kind, "description": description}
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Dispute, answer)

    def resolve(
        self,
        dispute_id: str,
        *,
        outcome: Literal["won", "lost"],
        idempotency_key: str | None = None,
    ) -> Payment:
        path = f"/v1/disputes/{path_id(dispute_id)}/resolve"
        body = {"outcome": outcome}
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Payment, answer)


class SplitRules(Resource):
    def create(
        self,
        *,
        name: str,
        shares: Sequence[Mapping[str, str | int]],
        levels: int = 1,
        idempotency_key: str | None = None,
    ) -> SplitRule:
        """A revenue-sharing rule: `shares` are `{"merchant_id": "mer_…", "bps": …}`."""
        body = {"name": name, "shares": [dict(share) for share in shares], "levels": levels}
        answer = self._transport.request(
            "POST", "/v1/split-rules", json=body, idempotency_key=idempotency_key
        )
        return cast(SplitRule, answer)


class MyPayments(Resource):
    """The signed-in wallet holder's money."""

    def wallets(self) -> WalletList:
        return cast(WalletList, self._transport.request("GET", "/v1/me/wallets"))

    def top_up(
        self,
        *,
        amount: int,
        currency: str,
        method: Method,
        instrument: str,
        step_up_token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Add money from a card number or an IBAN (`step_up_token` after a risk
        challenge, bound to the payee `provider:<name>` the challenge names)."""
        body = without_none(
            {
                "amount": amount,
                "currency": currency,
                "method": method,
                "instrument": instrument,
                "step_up_token": step_up_token,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/me/top-ups", json=body, idempotency_key=idempotency_key
        )
        return cast(Payment, answer)

    def withdraw(
        self,
        *,
        amount: int,
        currency: str,
        method: Method,
        destination: str,
        step_up_token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Pay out to a card or bank account (large amounts need a `step_up_token`)."""
        body = without_none(
            {
                "amount": amount,
                "currency": currency,
                "method": method,
                "destination": destination,
                "step_up_token": step_up_token,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/me/withdrawals", json=body, idempotency_key=idempotency_key
        )
        return cast(Payment, answer)

    def send(
        self,
        *,
        recipient: str,
        amount: int,
        currency: str,
        step_up_token: str | None = None,
        source_currency: str | None = None,
        quote_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Send money to another user (`usr_…`, a phone number or a handle): `amount` of
        `currency` reaches them. From the wallet in `source_currency` when it differs
        (converted through FX with the `quote_id` quote, `fxq_…`, or one made now)."""
        body = without_none(
            {
                "recipient": recipient,
                "amount": amount,
                "currency": currency,
                "step_up_token": step_up_token,
                "source_currency": source_currency,
                "quote_id": quote_id,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/me/p2p", json=body, idempotency_key=idempotency_key
        )
        return cast(Payment, answer)

    def authorize(
        self,
        payment_id: str,
        *,
        source_currency: str | None = None,
        quote_id: str | None = None,
        step_up_token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Pay a merchant's payment from the wallet; from the wallet in `source_currency`
        when it differs from the payment's (converted through FX with the `quote_id`
        quote, `fxq_…`, or one made now). `step_up_token`: after a risk challenge."""
        path = f"/v1/me/payments/{path_id(payment_id)}/authorize"
        body = without_none(
            {
                "source_currency": source_currency,
                "quote_id": quote_id,
                "step_up_token": step_up_token,
            }
        )
        answer = self._transport.request(
            "POST", path, json=body or None, idempotency_key=idempotency_key
        )
        return cast(Payment, answer)

    def get(self, payment_id: str) -> Payment:
        path = f"/v1/me/payments/{path_id(payment_id)}"
        return cast(Payment, self._transport.request("GET", path))

    def request_money(
        self,
        *,
        payer: str,
        amount: int,
        currency: str,
        note: str | None = None,
        expires_in_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> MoneyRequest:
        body = without_none(
            {
                "payer": payer,
                "amount": amount,
                "currency": currency,
                "note": note,
                "expires_in_s": expires_in_s,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/me/money-requests", json=body, idempotency_key=idempotency_key
        )
        return cast(MoneyRequest, answer)

    def get_money_request(self, request_id: str) -> MoneyRequest:
        path = f"/v1/me/money-requests/{path_id(request_id)}"
        return cast(MoneyRequest, self._transport.request("GET", path))

    def approve_money_request(
        self,
        request_id: str,
        *,
        source_currency: str | None = None,
        quote_id: str | None = None,
        step_up_token: str | None = None,
        idempotency_key: str | None = None,
    ) -> MoneyRequest:
        """Pay a request made to this user; from the wallet in `source_currency` when it
        differs from the request's (converted through FX with the `quote_id` quote,
        `fxq_…`, or one made now). `step_up_token`: after a risk challenge."""
        path = f"/v1/me/money-requests/{path_id(request_id)}/approve"
        body = without_none(
            {
                "source_currency": source_currency,
                "quote_id": quote_id,
                "step_up_token": step_up_token,
            }
        )
        answer = self._transport.request(
            "POST", path, json=body or None, idempotency_key=idempotency_key
        )
        return cast(MoneyRequest, answer)

    def decline_money_request(
        self, request_id: str, *, idempotency_key: str | None = None
    ) -> MoneyRequest:
        path = f"/v1/me/money-requests/{path_id(request_id)}/decline"
        answer = self._transport.request("POST", path, idempotency_key=idempotency_key)
        return cast(MoneyRequest, answer)


class Connectors(Resource):
    """The inbound side of payment providers (a public route: the provider's signature
    over the exact body is the credential, so no API key is sent)."""

    def notify(
        self, provider: str, *, body: bytes, headers: Mapping[str, str]
    ) -> NotificationReceipt:
        """Relay a provider's signed notification: `body` byte for byte, with its
        signature `headers`."""
        path = f"/v1/connectors/{path_id(provider)}/notifications"
        answer = self._transport.request(
            "POST",
            path,
            content=body,
            headers={"Content-Type": "application/json", **headers},
            authenticated=False,
            replay_safe=False,
        )
        return cast(NotificationReceipt, answer)
