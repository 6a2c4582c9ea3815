"""The server's newer conventions through the SDK against the real application, on both
backends: its new refusals reach the caller as typed errors with their extensions, and
the `Idempotency-Key` a caller gives a PUT, PATCH or DELETE is the one the server reads,
kept across that call's retries."""

from __future__ import annotations

import time
from typing import Any

import pytest

from billfold.client import (
    BadRequestError,
    ConflictError,
    ServerError,
    ValidationError,
    new_transfer_id,
)
from billfold.identity.types import Scope
from client.sdk_support import USER_PASSWORD, FlakyTransport, running, unique_email
from privacy.privacy_support import MASTER_KEY

EVENTS = [Scope.EVENTS_READ, Scope.WEBHOOKS_WRITE, Scope.LEDGER_READ, Scope.LEDGER_WRITE]
POSTED = "com.billfold.transfer.posted.v1"
VOIDED = "com.billfold.transfer.voided.v1"
SETTINGS: dict[str, Any] = {"ledger_batch_window_ms": 0, "webhooks_allow_private": True}
# Transfer events are written by the worker's ledger tail.
WORKER: dict[str, Any] = {**SETTINGS, "embedded_worker": True, "events_poll_interval_s": 0.02}


def test_an_undeclared_query_parameter_is_a_typed_400_with_its_extensions(
    database_url: str,
) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        with pytest.raises(BadRequestError) as unknown:
            billfold.request("GET", "/v1/accounts", params={"limt": 5})
        assert unknown.value.code == "unknown_query_parameter"
        assert unknown.value.extensions["unknown_parameters"] == ["limt"]
        assert {"cursor", "limit"} <= set(unknown.value.extensions["allowed_parameters"])
        assert server.sleeps.delays_s == []  # a client error: not retried


def test_a_method_served_nowhere_is_a_typed_501_not_retried(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        with pytest.raises(ServerError) as unimplemented:
            billfold.request("TRACE", "/v1/accounts")
        assert (unimplemented.value.status, unimplemented.value.code) == (
            501,
            "method_not_implemented",
        )
        assert server.sleeps.delays_s == []


def test_a_replay_to_an_endpoint_not_subscribed_is_a_typed_conflict(database_url: str) -> None:
    with running(database_url, **WORKER) as server, server.billfold(EVENTS) as billfold:
        endpoint = billfold.webhook_endpoints.create(
            url="http://127.0.0.1:9/hook", event_types=[VOIDED]
        )
        debit = billfold.accounts.create(ledger="USD", code=1)["id"]
        credit = billfold.accounts.create(ledger="USD", code=1)["id"]
        transfer_id = new_transfer_id()
        billfold.transfers.create(
            id=transfer_id,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=5,
            ledger="USD",
            code=1,
        )
        deadline = time.monotonic() + 10
        while not (posted := billfold.events.list(aggregate=transfer_id, type=POSTED)["items"]):
            assert time.monotonic() < deadline, "no event"
            time.sleep(0.05)
        [posted_event] = posted
        with pytest.raises(ConflictError) as refused:
            billfold.events.replay(posted_event["id"], endpoint_id=endpoint["id"])
        assert refused.value.code == "event_not_subscribed"


def test_a_consent_for_an_erased_user_is_a_typed_key_destroyed(database_url: str) -> None:
    scopes = [Scope.USERS_ADMIN, Scope.PII_WRITE, Scope.PII_READ]
    with (
        running(database_url, master_key=MASTER_KEY) as server,
        server.billfold(scopes) as billfold,
    ):
        user = billfold.users.create(email=unique_email(), password=USER_PASSWORD)["id"]
        billfold.pii.put(user, name="Ann Smith")
        billfold.pii.erase(user)
        with pytest.raises(ValidationError) as destroyed:
            billfold.consents.grant(user, purpose="marketing", version="2026-01")
        assert destroyed.value.code == "key_destroyed"


def test_the_key_given_to_a_put_is_the_one_the_server_reads(database_url: str) -> None:
    """The same key with another body is the server's 422 `idempotency_key_reused`: the
    SDK sent the caller's key, not one of its own."""
    with running(database_url) as server, server.billfold([Scope.USERS_ADMIN]) as billfold:
        user = billfold.users.create(email=unique_email(), password=USER_PASSWORD)["id"]
        first = billfold.wallets.set_kyc_tier(user, tier=1, idempotency_key="tier-of-ann")
        again = billfold.wallets.set_kyc_tier(user, tier=1, idempotency_key="tier-of-ann")
        assert again == first
        with pytest.raises(ValidationError) as reused:
            billfold.wallets.set_kyc_tier(user, tier=2, idempotency_key="tier-of-ann")
        assert reused.value.code == "idempotency_key_reused"


def test_a_patch_whose_answer_was_lost_is_retried_with_its_key(database_url: str) -> None:
    with running(database_url, **SETTINGS) as server:
        flaky = FlakyTransport(server.transport())
        with server.billfold(EVENTS, http_transport=flaky) as billfold:
            endpoint = billfold.webhook_endpoints.create(url="http://127.0.0.1:9/hook")
            flaky.attempts.clear()
            flaky.reached_app.clear()
            flaky.failures = ["drop"]
            updated = billfold.webhook_endpoints.update(
                endpoint["id"], description="orders", idempotency_key="describe-orders"
            )
        assert updated["description"] == "orders"
        assert flaky.reached_app == [True, True]
        keys = {attempt.headers["Idempotency-Key"] for attempt in flaky.attempts}
        assert keys == {"describe-orders"}
