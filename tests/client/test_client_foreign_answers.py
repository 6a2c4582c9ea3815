"""Answers that are not Billfold's, from a wrong `base_url` (another server, a proxy, a
load balancer redirecting to a sign-in page): a redirect, or a 404 or 405 page not labelled
JSON, is `UnexpectedResponseError`, never retried, never read as a problem (it was an
`ApiError`: `NotFoundError` said a thing did not exist, and ended a retried DELETE as done,
when the call never reached Billfold). The pages a proxy in front of Billfold answers about
the call (403, 413, 429, 5xx) stay typed."""

from __future__ import annotations

import httpx
import pytest

from billfold.client import (
    AsyncBillfold,
    Billfold,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UnexpectedResponseError,
)

_ACCOUNT = "acc_" + "0" * 32
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_FOREIGN = [
    (301, {"Location": "https://wallet.example/v1/accounts"}, b""),
    (302, {"Location": "/login", **_HTML}, b"<html>Sign in</html>"),
    (307, {"Location": "http://h/v1/accounts/"}, b""),
    (308, {"Location": "https://h/v1/accounts", "Content-Type": "application/json"}, b"{}"),
    (404, _HTML, b"<html><h1>404 Not Found</h1>nginx</html>"),
    (404, {}, b""),
    (404, {"Content-Type": "text/plain"}, b"404 page not found"),
    (405, _HTML, b"<html>Method Not Allowed</html>"),
]


def _answering(status: int, headers: dict[str, str], body: bytes, sent: list[httpx.Request]):  # type: ignore[no-untyped-def]
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, headers=headers, content=body)

    return answer


@pytest.mark.parametrize(("status", "headers", "body"), _FOREIGN)
def test_a_foreign_error_answer_is_unexpected_and_not_retried(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    sent: list[httpx.Request] = []
    delays: list[float] = []
    with Billfold(
        api_key="bf_test_x",
        base_url="http://h",
        http_transport=httpx.MockTransport(_answering(status, headers, body, sent)),
        sleep=delays.append,
    ) as billfold:
        with pytest.raises(UnexpectedResponseError, match="is base_url Billfold's") as raised:
            billfold.accounts.get(_ACCOUNT)
        assert raised.value.status == status
        assert raised.value.content_type == headers.get("Content-Type")
        with pytest.raises(UnexpectedResponseError):
            billfold.accounts.create(ledger="USD", code=1)
        with pytest.raises(UnexpectedResponseError):
            list(billfold.events.stream())
    assert len(sent) == 3 and delays == []


def test_a_redirect_names_where_it_points() -> None:
    sent: list[httpx.Request] = []
    headers = {"Location": "https://sso.example/login"}
    with (
        Billfold(
            api_key="bf_test_x",
            base_url="http://h",
            http_transport=httpx.MockTransport(_answering(302, headers, b"", sent)),
        ) as billfold,
        pytest.raises(UnexpectedResponseError, match=r"redirect to https://sso\.example/login"),
    ):
        billfold.accounts.list()


def test_a_retried_delete_answered_by_a_404_page_is_not_taken_as_done() -> None:
    """The first attempt's answer was lost; the retry reached another server: that 404
    says nothing about the endpoint, which may well still exist."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) == 1:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(404, headers=_HTML, content=b"<html>Not Found</html>")

    with (
        Billfold(
            api_key="bf_test_x",
            base_url="http://h",
            http_transport=httpx.MockTransport(answer),
            sleep=lambda seconds: None,
        ) as billfold,
        pytest.raises(UnexpectedResponseError),
    ):
        billfold.webhook_endpoints.delete("whe_" + "0" * 32)
    assert len(sent) == 2


def test_billfolds_own_404_is_still_not_found() -> None:
    problem = b'{"type":"about:blank","title":"Not Found","status":404,"code":"account_not_found"}'
    headers = {"Content-Type": "application/problem+json"}
    with (
        Billfold(
            api_key="bf_test_x",
            base_url="http://h",
            http_transport=httpx.MockTransport(_answering(404, headers, problem, [])),
        ) as billfold,
        pytest.raises(NotFoundError) as raised,
    ):
        billfold.accounts.get(_ACCOUNT)
    assert raised.value.code == "account_not_found"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, PermissionDeniedError), (413, PayloadTooLargeError), (429, RateLimitedError)],
)
def test_a_proxys_own_403_413_and_429_pages_stay_typed(status: int, kind: type[Exception]) -> None:
    sent: list[httpx.Request] = []
    body = b"<html>nginx</html>"
    with (
        Billfold(
            api_key="bf_test_x",
            base_url="http://h",
            retries_max=1,
            http_transport=httpx.MockTransport(_answering(status, _HTML, body, sent)),
            sleep=lambda seconds: None,
        ) as billfold,
        pytest.raises(kind),
    ):
        billfold.accounts.create(ledger="USD", code=1)
    assert len(sent) == (2 if status == 429 else 1)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "headers", "body"), _FOREIGN[:5])
async def test_the_async_client_refuses_a_foreign_error_answer_too(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    sent: list[httpx.Request] = []
    inner = _answering(status, headers, body, sent)

    async def answer(request: httpx.Request) -> httpx.Response:
        return inner(request)  # type: ignore[no-any-return]

    async with AsyncBillfold(
        api_key="bf_test_x", base_url="http://h", http_transport=httpx.MockTransport(answer)
    ) as billfold:
        with pytest.raises(UnexpectedResponseError) as raised:
            await billfold.accounts.get(_ACCOUNT)
    assert raised.value.status == status and len(sent) == 1
