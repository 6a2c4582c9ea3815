"""Retries against the real application: one idempotency key per logical call, reused by
every retry, so a request the application already handled applies once; `Retry-After` is
honoured (the injected sleep records it); calls the server cannot deduplicate are retried
only when they surely never left; typed errors carry the problem's code, detail,
extensions and request id."""

from __future__ import annotations

import uuid

import pytest

from billfold.client import (
    AuthenticationError,
    BadRequestError,
    Billfold,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
    new_transfer_id,
)
from billfold.identity.types import Scope
from client.sdk_support import BASE_URL, FlakyTransport, running, unique_email


@pytest.mark.parametrize("failure", ["connect", "drop", "503_before", "503_after"])
def test_a_retried_post_reuses_its_key_and_applies_once(database_url: str, failure: str) -> None:
    with running(database_url) as server:
        flaky = FlakyTransport(server.transport())
        with server.billfold(http_transport=flaky) as billfold:
            debit = billfold.accounts.create(ledger="USD", code=1)
            credit = billfold.accounts.create(ledger="USD", code=1)
            flaky.attempts.clear()
            flaky.reached_app.clear()
            flaky.failures = [failure]  # type: ignore[list-item]
            # Without an id of its own the account is only as unique as the call's key.
            opened = billfold.accounts.create(ledger="USD", code=2, user_data="once")
            assert len(flaky.attempts) == 2
            keys = {attempt.headers["Idempotency-Key"] for attempt in flaky.attempts}
            assert len(keys) == 1
            assert flaky.reached_app == [failure in ("drop", "503_after"), True]
            codes = [account["code"] for account in billfold.accounts.iterate()]
            assert codes.count(2) == 1
            assert billfold.accounts.get(opened["id"])["user_data"] == "once"

            flaky.failures = [failure]  # type: ignore[list-item]
            transfer = billfold.transfers.create(
                id=new_transfer_id(),
                debit_account_id=debit["id"],
                credit_account_id=credit["id"],
                amount=100,
                ledger="USD",
                code=1,
            )
            assert transfer["result"] == "ok"
            assert billfold.accounts.get(credit["id"])["credits_posted"] == "100"
        assert len(server.sleeps.delays_s) == 2


@pytest.mark.parametrize("failure", ["drop", "503_after"])
def test_a_delete_whose_answer_was_lost_succeeds(database_url: str, failure: str) -> None:
    """The retry of a DELETE the application already applied finds nothing: that 404 was
    raised as NotFoundError for a call that did what it was asked. A 404 no earlier
    attempt explains (the first never left) is still one."""
    with running(database_url, webhooks_allow_private=True) as server:
        flaky = FlakyTransport(server.transport())
        with server.billfold(
            [Scope.WEBHOOKS_WRITE, Scope.EVENTS_READ], http_transport=flaky
        ) as billfold:
            endpoint = billfold.webhook_endpoints.create(url="http://127.0.0.1:9/hook")
            flaky.failures = [failure]  # type: ignore[list-item]
            assert billfold.webhook_endpoints.delete(endpoint["id"]) is None
            assert flaky.reached_app[-2:] == [True, True]
            with pytest.raises(NotFoundError):
                billfold.webhook_endpoints.get(endpoint["id"])
            flaky.failures = ["connect"]
            with pytest.raises(NotFoundError) as missing:
                billfold.webhook_endpoints.delete(endpoint["id"])
            assert missing.value.code == "webhook_endpoint_not_found"


@pytest.mark.parametrize("failure", ["drop", "503_after"])
def test_a_conditional_put_whose_answer_was_lost_gets_its_first_answer(
    database_url: str, failure: str
) -> None:
    """The retry carries the first attempt's key, so the server answers it as it answered
    the first, instead of refusing a version the first attempt moved on."""
    with running(database_url) as server:
        flaky = FlakyTransport(server.transport())
        with server.billfold([Scope.FEES_READ, Scope.FEES_WRITE], http_transport=flaky) as billfold:
            rules = [{"name": "all", "tiers": [{"bps": 50}]}]
            created = billfold.fee_schedules.create(name="Standard", rules=rules)
            flaky.attempts.clear()
            flaky.reached_app.clear()
            flaky.failures = [failure]  # type: ignore[list-item]
            replaced = billfold.fee_schedules.replace(
                created["id"], name="Cheaper", rules=rules, version=1
            )
            assert (replaced["name"], replaced["version"]) == ("Cheaper", 2)
            assert flaky.reached_app == [True, True]
            keys = {attempt.headers["Idempotency-Key"] for attempt in flaky.attempts}
            assert len(keys) == 1
            assert billfold.fee_schedules.get(created["id"])["version"] == 2


def test_two_calls_get_two_keys_and_a_given_key_is_sent_as_is(database_url: str) -> None:
    with running(database_url) as server:
        flaky = FlakyTransport(server.transport())
        with server.billfold(http_transport=flaky) as billfold:
            billfold.accounts.create(ledger="USD", code=1)
            billfold.accounts.create(ledger="USD", code=1)
            key = f"order-{uuid.uuid4().hex}"
            first = billfold.accounts.create(ledger="USD", code=3, idempotency_key=key)
            replay = billfold.accounts.create(ledger="USD", code=3, idempotency_key=key)
            assert replay["id"] == first["id"]
            sent = [attempt.headers["Idempotency-Key"] for attempt in flaky.attempts]
            assert len(set(sent[:2])) == 2
            assert sent[2:] == [key, key]
            with pytest.raises(ValidationError) as reused:
                billfold.accounts.create(ledger="USD", code=4, idempotency_key=key)
            assert reused.value.code == "idempotency_key_reused"
            billfold.accounts.list()
            assert "Idempotency-Key" not in flaky.attempts[-1].headers


def test_retry_after_is_honoured_then_the_call_succeeds(database_url: str) -> None:
    with running(database_url) as server:
        flaky = FlakyTransport(server.transport(), ["429", "429"])
        with server.billfold(http_transport=flaky) as billfold:
            assert billfold.accounts.list()["items"] == []
        assert server.sleeps.delays_s == [7.0, 7.0]


def test_the_servers_own_429_is_retried_as_told_then_raised_typed(database_url: str) -> None:
    with running(database_url, rate_limit_credential_requests=2) as server:
        with server.billfold(retries_max=2) as billfold:
            billfold.accounts.list()
            billfold.accounts.list()
            with pytest.raises(RateLimitedError) as limited:
                billfold.accounts.list()
        error = limited.value
        assert error.status == 429
        assert error.code == "rate_limited"
        assert error.retry_after_s is not None and error.retry_after_s > 0
        assert error.request_id
        assert server.sleeps.delays_s == [error.retry_after_s] * 2


def test_a_connection_that_never_opens_is_retried_boundedly(database_url: str) -> None:
    with running(database_url) as server:
        flaky = FlakyTransport(server.transport(), ["connect"] * 5)
        with (
            server.billfold(http_transport=flaky, retries_max=3) as billfold,
            pytest.raises(TransportError, match="ConnectError"),
        ):
            billfold.accounts.list()
        assert len(flaky.attempts) == 4
        assert len(server.sleeps.delays_s) == 3
        assert all(0 <= delay <= 30 for delay in server.sleeps.delays_s)


def test_a_sign_in_whose_answer_was_lost_is_not_replayed(database_url: str) -> None:
    """The public sign-in routes have no idempotency scope: a replayed refresh would look
    like theft, so only a request that surely never left is retried."""
    with running(database_url) as server:
        with server.billfold([Scope.USERS_ADMIN]) as backend:
            email = unique_email()
            backend.users.create(email=email, password="correct horse battery")
        flaky = FlakyTransport(server.transport(), ["drop"])
        with server.user(http_transport=flaky) as user:
            with pytest.raises(TransportError, match="ReadError"):
                user.sign_in(identifier=email, password="correct horse battery")
            assert len(flaky.attempts) == 1
            flaky.failures = ["connect", "503_before"]
            with pytest.raises(ServerError):
                user.sign_in(identifier=email, password="correct horse battery")
            assert len(flaky.attempts) == 3  # the refused connection was retried, the 503 not
            flaky.failures = ["connect", "429"]
            signed_in = user.sign_in(identifier=email, password="correct horse battery")
            assert signed_in["status"] == "authenticated"


def test_error_answers_become_typed_exceptions_with_the_problem(database_url: str) -> None:
    with running(database_url) as server:
        with server.billfold([Scope.LEDGER_READ]) as reader:
            with pytest.raises(BadRequestError) as bad:
                reader.accounts.get("acc_not-an-id")
            assert bad.value.status == 400
            assert bad.value.code == "invalid_id"
            with pytest.raises(PermissionDeniedError) as forbidden:
                reader.accounts.create(ledger="USD", code=1)
            assert forbidden.value.code == "insufficient_scope"
            assert forbidden.value.extensions["required_scopes"] == ["ledger:write"]
            assert forbidden.value.request_id
            with pytest.raises(BadRequestError) as cursor:
                reader.accounts.list(cursor="!!")
            assert cursor.value.code in {"invalid_cursor", "validation_failed"}
        with Billfold(
            api_key="bf_test_" + "0" * 40, base_url=BASE_URL, http_transport=server.transport()
        ) as stranger:
            with pytest.raises(AuthenticationError) as unauthorized:
                stranger.accounts.list()
            assert unauthorized.value.status == 401
            assert unauthorized.value.code == "unauthorized"
        with server.billfold() as writer:
            with pytest.raises(NotFoundError) as missing:
                writer.transfers.get(new_transfer_id())
            assert missing.value.code == "transfer_not_found"
            with pytest.raises(ValidationError) as invalid:
                writer.accounts.create(ledger="USD", code=1, flags=["no_such_flag"])
            assert invalid.value.code == "validation_failed"
            assert invalid.value.detail
            assert invalid.value.extensions["errors"][0]["loc"][-2:] == ["flags", 0]
            account = writer.accounts.create(ledger="USD", code=1)
            with pytest.raises(ConflictError) as conflict:
                writer.accounts.create(id=account["id"], ledger="EUR", code=1)
            assert conflict.value.code.startswith("exists_with_different")
            assert str(conflict.value).startswith("409 ")


def test_a_client_refuses_absurd_options() -> None:
    for options in ({"retries_max": -1}, {"retries_max": 11}, {"timeout_s": 0}):
        with pytest.raises(ValueError, match="must be"):
            Billfold(api_key="bf_test_x", **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api_key"):
        Billfold(api_key="")
