"""The ledger over HTTP: parse, call the `Ledger` facade, shape the response.

Every route needs an API key with `ledger:read` or `ledger:write`, and every read and write
is scoped to the caller's `Principal.ledger_tenant_id` (tenant and mode): another tenant's
or the other mode's id is a 404, exactly like one that does not exist. Transfers go through
the batching writer, so concurrent requests share database transactions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from billfold.kit.auth import Principal, require_scopes
from billfold.kit.errors import InvariantViolation
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX, clamp_page_size
from billfold.ledger.errors import account_refused, transfer_refused
from billfold.ledger.ledger import Ledger
from billfold.ledger.schemas import (
    ACCOUNT_ID_PREFIX,
    TRANSFER_ID_PREFIX,
    AccountCreated,
    AccountCreateRequest,
    AccountPage,
    AccountResponse,
    BalanceHistoryPage,
    BalancesResponse,
    TransferBatchRequest,
    TransferBatchResponse,
    TransferCreated,
    TransferCreateRequest,
    TransferPage,
    TransferResponse,
    TransferResultResponse,
)
from billfold.ledger.types import CreateAccountStatus, CreateTransferStatus

__all__ = ["LEDGER_READ", "LEDGER_WRITE", "TRANSFER_BATCH_PATH", "router"]

LEDGER_READ = "ledger:read"
LEDGER_WRITE = "ledger:write"
TRANSFER_BATCH_PATH = "/v1/transfers/batch"
"""The one route whose body may exceed the default size limit (8,190 transfers)."""
_TIMESTAMP_MAX = 2**63 - 1

router = APIRouter(prefix="/v1", tags=["ledger"], responses=problem_responses(401, 403, 429))
Reader = Annotated[Principal, Depends(require_scopes(LEDGER_READ))]
Writer = Annotated[Principal, Depends(require_scopes(LEDGER_WRITE))]
Cursor = Annotated[
    str | None,
    Query(
        max_length=CURSOR_LENGTH_MAX,
        description="The previous page's `next_cursor`, sent with the same path, `order` and"
        " filters (any `limit`); any other cursor is 400 `invalid_cursor`.",
    ),
]
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]


def _timestamp(description: str) -> Any:
    return Query(ge=0, le=_TIMESTAMP_MAX, description=f"ns since the epoch: {description}")


Since = Annotated[int | None, _timestamp("only transfers at or after it (inclusive).")]
Until = Annotated[int | None, _timestamp("only transfers at or before it (inclusive).")]
AsOf = Annotated[
    int | None,
    _timestamp("the balances right after the last transfer at or before it (inclusive)."),
]


async def get_ledger(request: Request) -> Ledger:
    """The application's ledger, opened by the lifespan in ``billfold.app``."""
    ledger = getattr(request.app.state, "ledger", None)
    if not isinstance(ledger, Ledger):
        raise InvariantViolation("the app lifespan sets up app.state.ledger")
    return ledger


Ledgers = Annotated[Ledger, Depends(get_ledger)]


def _existed(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "It existed already, with the same fields."}}


def _created(noun: str) -> dict[int | str, dict[str, Any]]:
    """The 201's `Location`: RFC 9110 section 15.3.2 takes a 201 without one to have
    created the request's target (`/v1/accounts`), not the account it opened."""
    location = {
        "required": True,
        "schema": {"type": "string"},
        "description": f"The path of the {noun} created: `GET` it to read it back.",
    }
    return {201: {"description": f"The {noun} was created now.", "headers": {"Location": location}}}


def _created_at(request: Request, response: Response, path: str) -> None:
    # The path under the app's mount point (uvicorn's --root-path), computed, not looked
    # up with url_for: that walks every route, on the hottest route.
    response.headers["Location"] = f"{request.scope.get('root_path', '')}{router.prefix}{path}"


# The hottest route first: FastAPI tries a router's routes in order, about 7 µs each (with
# FastAPI 0.165's included routers), and POST /v1/transfers came seventh of nine.
@router.post(
    "/transfers",
    status_code=201,
    summary="Record a transfer; 200 if its id was recorded before with the same fields.",
    responses={
        **_created("transfer"),
        **_existed(TransferCreated),
        **problem_responses(409, 422, 503),
    },
)
async def create_transfer(
    body: TransferCreateRequest,
    principal: Writer,
    ledger: Ledgers,
    request: Request,
    response: Response,
) -> TransferCreated:
    result, transfer = await ledger.create_transfer(
        body.to_new_transfer(tenant_id=principal.ledger_tenant_id)
    )
    if transfer is None:
        raise transfer_refused(result.status)
    created = TransferCreated.from_result(result, transfer)
    if result.status is CreateTransferStatus.EXISTS:
        response.status_code = 200
    else:
        _created_at(request, response, f"/transfers/{created.id}")
    return created


@router.post(
    "/accounts",
    status_code=201,
    summary="Open an account; 200 if your id exists with the same fields.",
    responses={**_created("account"), **_existed(AccountCreated), **problem_responses(409, 422)},
)
async def create_account(
    body: AccountCreateRequest,
    principal: Writer,
    ledger: Ledgers,
    request: Request,
    response: Response,
) -> AccountCreated:
    new = body.to_new_account(tenant_id=principal.ledger_tenant_id)
    result, account = await ledger.create_account(new)
    if account is None:
        raise account_refused(result.status, too_long=body.fields_too_long())
    created = AccountCreated.from_result(result, account)
    if result.status is CreateAccountStatus.EXISTS:
        response.status_code = 200
    else:
        _created_at(request, response, f"/accounts/{created.id}")
    return created


@router.get(
    "/accounts",
    summary="List your accounts in the order they were opened.",
    responses=problem_responses(400, 422),
)
async def list_accounts(
    principal: Reader, ledger: Ledgers, cursor: Cursor = None, limit: Limit = None
) -> AccountPage:
    page = await ledger.list_accounts(
        tenant_id=principal.ledger_tenant_id, limit=clamp_page_size(limit), cursor=cursor
    )
    return AccountPage.from_page(page)


@router.get(
    "/accounts/{account_id}",
    summary="Get an account and its balances.",
    responses=problem_responses(400, 404),
)
async def get_account(account_id: str, principal: Reader, ledger: Ledgers) -> AccountResponse:
    account = await ledger.get_account(
        tenant_id=principal.ledger_tenant_id, account_id=parse_id(ACCOUNT_ID_PREFIX, account_id)
    )
    return AccountResponse.from_account(account)


@router.get(
    "/accounts/{account_id}/transfers",
    summary="An account's transfers in time order.",
    responses=problem_responses(400, 404, 422),
)
async def list_account_transfers(
    account_id: str,
    principal: Reader,
    ledger: Ledgers,
    cursor: Cursor = None,
    limit: Limit = None,
    order: Literal["asc", "desc"] = "asc",
    code: Annotated[int | None, Query(ge=0, le=65_535)] = None,
    since: Since = None,
    until: Until = None,
) -> TransferPage:
    page = await ledger.account_transfers(
        tenant_id=principal.ledger_tenant_id,
        account_id=parse_id(ACCOUNT_ID_PREFIX, account_id),
        limit=clamp_page_size(limit),
        cursor=cursor,
        descending=order == "desc",
        since_timestamp=since,
        until_timestamp=until,
        code=code,
    )
    return TransferPage.from_page(page)


@router.get(
    "/accounts/{account_id}/balances",
    summary="An account's balances now, or as of a timestamp (accounts with `history`).",
    responses=problem_responses(400, 404, 422),
)
async def get_balances(
    account_id: str, principal: Reader, ledger: Ledgers, as_of: AsOf = None
) -> BalancesResponse:
    tenant_id, parsed_id = principal.ledger_tenant_id, parse_id(ACCOUNT_ID_PREFIX, account_id)
    if as_of is None:
        account = await ledger.get_account(tenant_id=tenant_id, account_id=parsed_id)
        return BalancesResponse.current(account)
    record = await ledger.balance_as_of(tenant_id=tenant_id, account_id=parsed_id, timestamp=as_of)
    return BalancesResponse.historical(account_id=parsed_id, as_of=as_of, record=record)


@router.get(
    "/accounts/{account_id}/balance-history",
    summary="An account's balances after each of its transfers (accounts with `history`).",
    responses=problem_responses(400, 404, 422),
)
async def get_balance_history(
    account_id: str, principal: Reader, ledger: Ledgers, cursor: Cursor = None, limit: Limit = None
) -> BalanceHistoryPage:
    page = await ledger.balance_history(
        tenant_id=principal.ledger_tenant_id,
        account_id=parse_id(ACCOUNT_ID_PREFIX, account_id),
        limit=clamp_page_size(limit),
        cursor=cursor,
    )
    return BalanceHistoryPage.from_page(page)


@router.post(
    "/transfers/batch",
    summary="Record up to 8,190 transfers in order, in one database transaction.",
    responses=problem_responses(413, 422, 503),
)
async def create_transfer_batch(
    body: TransferBatchRequest, principal: Writer, ledger: Ledgers
) -> TransferBatchResponse:
    results = await ledger.submit(body.to_new_transfers(tenant_id=principal.ledger_tenant_id))
    return TransferBatchResponse(
        results=[TransferResultResponse.from_result(result) for result in results]
    )


@router.get(
    "/transfers/{transfer_id}",
    summary="Get a transfer.",
    responses=problem_responses(400, 404),
)
async def get_transfer(transfer_id: str, principal: Reader, ledger: Ledgers) -> TransferResponse:
    transfer = await ledger.get_transfer(
        tenant_id=principal.ledger_tenant_id,
        transfer_id=parse_id(TRANSFER_ID_PREFIX, transfer_id),
    )
    return TransferResponse.from_transfer(transfer)
