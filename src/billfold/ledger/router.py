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
Cursor = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]
Timestamp = Annotated[int | None, Query(ge=0, le=_TIMESTAMP_MAX, description="ns since epoch")]


async def get_ledger(request: Request) -> Ledger:
    """The application's ledger, opened by the lifespan in ``billfold.app``."""
    ledger = getattr(request.app.state, "ledger", None)
    if not isinstance(ledger, Ledger):
        raise InvariantViolation("the app lifespan sets up app.state.ledger")
    return ledger


Ledgers = Annotated[Ledger, Depends(get_ledger)]


def _existed(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "It existed already, with the same fields."}}


# The hottest route first: FastAPI tries a router's routes in order, about 7 µs each (with
# FastAPI 0.165's included routers), and POST /v1/transfers came seventh of nine.
@router.post(
    "/transfers",
    status_code=201,
    summary="Record a transfer; 200 if its id was recorded before with the same fields.",
    responses={**_existed(TransferCreated), **problem_responses(409, 422, 503)},
)
async def create_transfer(
    body: TransferCreateRequest, principal: Writer, ledger: Ledgers, response: Response
) -> TransferCreated:
    result, transfer = await ledger.create_transfer(
        body.to_new_transfer(tenant_id=principal.ledger_tenant_id)
    )
    if transfer is None:
        raise transfer_refused(result.status)
    if result.status is CreateTransferStatus.EXISTS:
        response.status_code = 200
    return TransferCreated.from_result(result, transfer)


@router.post(
    "/accounts",
    status_code=201,
    summary="Open an account; 200 if your id exists with the same fields.",
    responses={**_existed(AccountCreated), **problem_responses(409, 422)},
)
async def create_account(
    body: AccountCreateRequest, principal: Writer, ledger: Ledgers, response: Response
) -> AccountCreated:
    new = body.to_new_account(tenant_id=principal.ledger_tenant_id)
    result, account = await ledger.create_account(new)
    if account is None:
        raise account_refused(result.status, too_long=body.fields_too_long())
    if result.status is CreateAccountStatus.EXISTS:
        response.status_code = 200
    return AccountCreated.from_result(result, account)


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
    since: Timestamp = None,
    until: Timestamp = None,
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
    account_id: str, principal: Reader, ledger: Ledgers, as_of: Timestamp = None
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
